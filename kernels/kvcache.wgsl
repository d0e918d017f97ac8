// The paged KV cache: each layer's keys and values live in two tensors [blocks, heads_kv, BLOCK, D] (KV = f16 or
// f32), where BLOCK tokens of one sequence share a block. A sequence owns a list of blocks (its block table), so
// sequences of any length share one pool and a block is the unit of allocation. Token at position t of a sequence
// lives in block table[t / BLOCK], slot t % BLOCK. A block keeps each head's BLOCK x D values contiguous, so the
// attention kernels read a head's keys as runs of whole rows.
//
// kv_write: stores k and v rows (post-RoPE keys) of T tokens at their cache slots, given per token as
// block * BLOCK + slot in `info` (0xffffffff: skip the row).

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
  kc_off: u32,     // element offsets of the caches in their bindings
  vc_off: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> info: array<u32>;
@group(0) @binding(2) var<storage, read> k: array<X>;
@group(0) @binding(3) var<storage, read> v: array<X>;
@group(0) @binding(4) var<storage, read_write> kcache: array<KV>;
@group(0) @binding(5) var<storage, read_write> vcache: array<KV>;

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
