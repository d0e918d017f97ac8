// The decoder's RoPE and KV cache write in one pass over a step's fused q|k|v rows: rotates q in place (as
// kernels/rope.wgsl does) and stores the rotated k and the v at each token's cache slot (as kv_write in
// kernels/kvcache.wgsl does), so a layer spends one dispatch on what took two. Values are rounded to the
// activation type X before the cache type KV, exactly as the two kernels in sequence round them.
//
// One thread per (token, head, pair): heads [0, heads_q) are query heads, [heads_q, heads_q + heads_kv) key heads,
// whose thread also copies the same two elements of the value head. Float caches only (the 8-bit cache quantizes
// whole head vectors, kernels/kvcache.wgsl).

struct Params {
  tokens: u32,
  heads_q: u32,
  heads_kv: u32,
  head_dim: u32,
  x_off: u32,      // element offset and row stride of the q|k|v rows
  x_stride: u32,
  pos_off: u32,
  slots_off: u32,  // cache slot per token (block * BLOCK + slot; 0xffffffff: no cache write), as in kvcache.wgsl
  block_size: u32,
  kc_off: u32,
  vc_off: u32,
}

#include "lib/rope.wgsl"

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> freq: array<f32>;
@group(0) @binding(2) var<storage, read> pos: array<u32>;
@group(0) @binding(3) var<storage, read> info: array<u32>;
@group(0) @binding(4) var<storage, read_write> x: array<X>;
@group(0) @binding(5) var<storage, read_write> kcache: array<KV>;
@group(0) @binding(6) var<storage, read_write> vcache: array<KV>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn rope_kv_write(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let t = gid.x + gid.y * ng.x * WG;
  let pairs = p.head_dim / 2u;
  let heads = p.heads_q + p.heads_kv;
  if (t >= p.tokens * heads * pairs) {
    return;
  }
  let i = t % pairs;
  let head = (t / pairs) % heads;
  let token = t / (pairs * heads);
  let c = cis(f32(pos[p.pos_off + token]) * freq[i]);
  let e = p.x_off + token * p.x_stride + head * p.head_dim + 2u * i;
  let a = f32(x[e]);
  let b = f32(x[e + 1u]);
  let rotated = vec2<X>(X(a * c.x - b * c.y), X(a * c.y + b * c.x));
  if (head < p.heads_q) {
    x[e] = rotated.x;
    x[e + 1u] = rotated.y;
    return;
  }
  let slot = info[p.slots_off + token];
  if (slot == 0xffffffffu) {
    return;  // a row no sequence owns
  }
  let kv_head = head - p.heads_q;
  let dst = ((slot / p.block_size * p.heads_kv + kv_head) * p.block_size + slot % p.block_size) * p.head_dim + 2u * i;
  kcache[p.kc_off + dst] = KV(f32(rotated.x));
  kcache[p.kc_off + dst + 1u] = KV(f32(rotated.y));
  let v = e + p.heads_kv * p.head_dim;
  vcache[p.vc_off + dst] = KV(f32(x[v]));
  vcache[p.vc_off + dst + 1u] = KV(f32(x[v + 1u]));
}
