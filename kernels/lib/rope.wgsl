// cis(φ) for rotary embeddings (kernels/rope.wgsl, and kernels/rope_kv.wgsl, which rotates keys as it caches them).

// 2π as C1 + C2 + C3, where C1 and C2 have 8 significant bits: n·C1 and n·C2 are exact in f32 for n < 2^16, so
// the reduction below is accurate without relying on a fused multiply-add (which WGSL does not guarantee).
const C1: f32 = 6.28125;
const C2: f32 = 0.0019378662109375;
const C3: f32 = -2.55903137e-6;

// cos and sin of an f32 angle, reduced to about [-π, π] first: GPU sin/cos are only accurate near zero, and
// decoder angles reach pos · 1 = 131071 (the reduction holds up to 2^16 turns, 4e5 radians).
fn cis(a: f32) -> vec2<f32> {
  let n = round(a * 0.159154943);
  let r = ((a - n * C1) - n * C2) - n * C3;
  return vec2<f32>(cos(r), sin(r));
}
