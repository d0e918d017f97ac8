// The paged KV cache: each layer's keys and values live in two tensors [blocks, heads_kv, BLOCK, D] (KV = f16 or
// f32), where BLOCK tokens of one sequence share a block. A sequence owns a list of blocks (its block table), so
// sequences of any length share one pool and a block is the unit of allocation. Token at position t of a sequence
// lives in block table[t / BLOCK], slot t % BLOCK. A block keeps each head's BLOCK x D values contiguous, so the
// attention kernels read a head's keys as runs of whole rows.
//
// The 8-bit option (KV = u32) stores each token's head vector as D int8 codes, four per word, so the cache
// tensors are u32 [blocks, heads_kv, BLOCK, D/4], plus one f32 scale per token and head in [blocks, heads_kv,
// BLOCK]: x = code * scale, scale = max|x| / 127, code = round(x / scale) (half away from zero).
//
// kv_write:    stores k and v rows (post-RoPE keys) of T tokens at their cache slots, given per token as
//              block * BLOCK + slot in `info` (0xffffffff: skip the row). One thread per element.
// kv_write_q8: the same into the 8-bit cache. One thread per token and head.

struct Params {
  tokens: u32,
  heads_kv: u32,
  head_dim: u32,
  block_size: u32,
  slots_off: u32,
  k_off: u32,      // k and v sources: [tokens, heads_kv * D] views
  k_stride: u32,
  v_off: u32,
  v_stride: u32,
  kc_off: u32,     // element offsets of the caches in their bindings (words for the 8-bit cache)
  vc_off: u32,
  ks_off: u32,     // 8-bit cache: element offsets of the scales
  vs_off: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> info: array<u32>;
@group(0) @binding(2) var<storage, read> k: array<X>;
@group(0) @binding(3) var<storage, read> v: array<X>;
@group(0) @binding(4) var<storage, read_write> kcache: array<KV>;
@group(0) @binding(5) var<storage, read_write> vcache: array<KV>;
@group(0) @binding(6) var<storage, read_write> kscale: array<f32>;
@group(0) @binding(7) var<storage, read_write> vscale: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn kv_write(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let i = gid.x + gid.y * ng.x * WG;
  let row = p.heads_kv * p.head_dim;
  let token = i / row;
  if (token >= p.tokens) {
    return;
  }
  let c = i % row;  // head * D + d
  let slot = info[p.slots_off + token];
  if (slot == 0xffffffffu) {
    return;  // a row no sequence owns
  }
  let block = slot / p.block_size;
  let dst = ((block * p.heads_kv + c / p.head_dim) * p.block_size + slot % p.block_size) * p.head_dim +
    c % p.head_dim;
  kcache[p.kc_off + dst] = KV(f32(k[p.k_off + token * p.k_stride + c]));
  vcache[p.vc_off + dst] = KV(f32(v[p.v_off + token * p.v_stride + c]));
}

// Quantizes one head vector of D values at `src` into the words at `dst` and returns its scale.
fn quantize_head(values: bool, src: u32, dst: u32) -> f32 {
  var amax = 0.0;
  for (var d = 0u; d < p.head_dim; d++) {
    amax = max(amax, abs(select(f32(k[src + d]), f32(v[src + d]), values)));
  }
  let scale = amax / 127.0;
  let inv = select(0.0, 1.0 / scale, scale > 0.0);
  for (var d = 0u; d < p.head_dim; d += 4u) {
    var word = 0u;
    for (var j = 0u; j < 4u; j++) {
      let x = select(f32(k[src + d + j]), f32(v[src + d + j]), values) * inv;
      let code = i32(sign(x) * floor(abs(x) + 0.5));
      word |= (u32(code) & 0xffu) << (8u * j);
    }
    if (values) {
      vcache[dst + d / 4u] = KV(word);
    } else {
      kcache[dst + d / 4u] = KV(word);
    }
  }
  return scale;
}

@compute @workgroup_size(WG)
fn kv_write_q8(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let i = gid.x + gid.y * ng.x * WG;
  let token = i / p.heads_kv;
  if (token >= p.tokens) {
    return;
  }
  let head = i % p.heads_kv;
  let slot = info[p.slots_off + token];
  if (slot == 0xffffffffu) {
    return;
  }
  let at = ((slot / p.block_size) * p.heads_kv + head) * p.block_size + slot % p.block_size;
  let words = at * (p.head_dim / 4u);
  kscale[p.ks_off + at] = quantize_head(false, p.k_off + token * p.k_stride + head * p.head_dim, p.kc_off + words);
  vscale[p.vs_off + at] = quantize_head(true, p.v_off + token * p.v_stride + head * p.head_dim, p.vc_off + words);
}
