// Seeded uniform random values, for models of real size with random weights generated on the GPU (benchmarks
// without weight files): y[i] = offset + scale * (u - 0.5), u = pcg(seed ^ pcg(start + i)) / 2^32 (24 bits).
// The value of element i depends only on (seed, start + i), so a tensor filled in pieces equals one filled whole.

struct Params {
  count: u32,
  start: u32,
  seed: u32,
  y_off: u32,
  scale: f32,
  offset: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;

fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

@compute @workgroup_size(WG)
fn random_uniform_f32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let i = gid.x + gid.y * ng.x * WG;
  if (i >= p.count) {
    return;
  }
  let u = f32(pcg(p.seed ^ pcg(p.start + i)) >> 8u) * (1.0 / 16777216.0);
  y[p.y_off + i] = p.offset + p.scale * (u - 0.5);
}
