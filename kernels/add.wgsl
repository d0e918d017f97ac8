// Elementwise sum out = a + b (the residual add of every transformer block).

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

override WORKGROUP_SIZE: u32 = 256u;

// Dispatched as a 2D grid of workgroups, since one dimension holds at most 65535 of them.
@compute @workgroup_size(WORKGROUP_SIZE)
fn add_f32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = gid.y * groups.x * WORKGROUP_SIZE + gid.x;
  if (i < arrayLength(&out)) {
    out[i] = a[i] + b[i];
  }
}
