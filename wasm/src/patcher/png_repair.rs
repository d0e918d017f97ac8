//! PNGs that Pillow (and so mistral_common) reads but the `png` crate refuses: Pillow checks the CRCs of the
//! chunks before the image data only, reads the image data up to the first chunk that is not IDAT, and needs no
//! IEND, nor the CRC of an image data chunk the file ends in. Such files come from tools that cut a file short
//! after its image or rewrite chunks carelessly.

const SIGNATURE_LEN: usize = 8;
const IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];

/// The file as the `png` crate takes it and Pillow reads it: everything up to its run of IDAT chunks as it is, the
/// IDAT chunks with their CRCs made right, then IEND. None when that changes nothing (the file's failure is
/// another), or when the file has no whole IDAT chunk.
pub fn repaired_png(bytes: &[u8]) -> Option<Vec<u8>> {
    let (start, end) = idat_run(bytes)?;
    let mut out = Vec::with_capacity(end + IEND.len());
    out.extend_from_slice(&bytes[..start]);
    let mut at = start;
    while at < end {
        let length = chunk_length(&bytes[at..]);
        out.extend_from_slice(&bytes[at..at + 8 + length]);
        out.extend_from_slice(&crc(&bytes[at + 4..at + 8 + length]).to_be_bytes());
        at += 12 + length;
    }
    out.extend_from_slice(&IEND);
    (out != bytes).then_some(out)
}

/// The byte range of the first run of whole IDAT chunks (the last may lack all or part of its CRC, at the end of
/// the file).
fn idat_run(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut at = SIGNATURE_LEN;
    let mut run: Option<(usize, usize)> = None;
    while let Some(header) = bytes.get(at..at + 8) {
        let data_end = (at + 8).checked_add(chunk_length(header));
        // An IDAT chunk whose data is whole, cut short in its CRC by the end of the file, ends the run.
        if &header[4..8] == b"IDAT" && data_end.map_or(false, |end| end <= bytes.len() && end + 4 > bytes.len()) {
            return Some((run.map_or(at, |(start, _)| start), data_end? + 4));
        }
        // Any other chunk cut short ends the walk.
        let end = match data_end.map(|n| n + 4).filter(|&end| end <= bytes.len()) {
            Some(end) => end,
            None => break,
        };
        match (&header[4..8] == b"IDAT", run) {
            (true, _) => run = Some((run.map_or(at, |(start, _)| start), end)),
            (false, Some(_)) => break,
            (false, None) => {}
        }
        at = end;
    }
    run
}

fn chunk_length(chunk: &[u8]) -> usize {
    u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) as usize
}

fn crc(kind_and_data: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(kind_and_data);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(kind: &[u8; 4], data: &[u8], good_crc: bool) -> Vec<u8> {
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let sum = crc(&out[4..]) ^ if good_crc { 0 } else { 1 };
        out.extend_from_slice(&sum.to_be_bytes());
        out
    }

    fn file(chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        chunks.iter().for_each(|c| out.extend_from_slice(c));
        out
    }

    #[test]
    fn whole_files_are_left_alone() {
        let ihdr = chunk(b"IHDR", &[0; 13], true);
        let good = file(&[ihdr.clone(), chunk(b"IDAT", b"abc", true), chunk(b"IDAT", b"de", true), IEND.to_vec()]);
        assert_eq!(repaired_png(&good), None);
        // A bad CRC before the image data is an error for Pillow too: nothing to repair.
        let bad_header = file(&[chunk(b"IHDR", &[0; 13], false), chunk(b"IDAT", b"abc", true), IEND.to_vec()]);
        assert_eq!(repaired_png(&bad_header), None);
        assert_eq!(repaired_png(&file(&[ihdr])), None);
    }

    #[test]
    fn crcs_after_the_header_chunks_are_remade_and_iend_added() {
        let ihdr = chunk(b"IHDR", &[0; 13], true);
        let want = file(&[ihdr.clone(), chunk(b"IDAT", b"abc", true), chunk(b"IDAT", b"de", true), IEND.to_vec()]);
        let cases = [
            file(&[ihdr.clone(), chunk(b"IDAT", b"abc", true), chunk(b"IDAT", b"de", true)]),
            file(&[ihdr.clone(), chunk(b"IDAT", b"abc", false), chunk(b"IDAT", b"de", true), IEND.to_vec()]),
            file(&[ihdr.clone(), chunk(b"IDAT", b"abc", true), chunk(b"IDAT", b"de", true), chunk(b"tEXt", b"k\0v", false), IEND.to_vec()]),
            [file(&[ihdr.clone(), chunk(b"IDAT", b"abc", true), chunk(b"IDAT", b"de", true)]), b"\0\0\0\x09tE".to_vec()].concat(),
        ];
        let whole = file(&[ihdr.clone(), chunk(b"IDAT", b"abc", true), chunk(b"IDAT", b"de", true)]);
        // The last chunk's CRC cut short, or missing.
        let cut = (1..=4).map(|k| whole[..whole.len() - k].to_vec());
        let cases = cases.into_iter().chain(cut);
        for case in cases {
            assert_eq!(repaired_png(&case).as_deref(), Some(&want[..]));
        }
    }
}
