// Workgroup reductions for kernels run with @workgroup_size(WG): every thread passes its value (thread index t)
// and gets the workgroup's result. They share the workgroup arrays declared here, and call workgroupBarrier, so
// every thread of the workgroup must call them (uniform control flow).

const WG: u32 = 256u;

var<workgroup> red_f: array<f32, WG>;
var<workgroup> red_u: array<u32, WG>;

fn sum_f(v: f32, t: u32) -> f32 {
  workgroupBarrier();
  red_f[t] = v;
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (t < s) {
      red_f[t] += red_f[t + s];
    }
  }
  workgroupBarrier();
  return red_f[0];
}

fn max_f(v: f32, t: u32) -> f32 {
  workgroupBarrier();
  red_f[t] = v;
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (t < s) {
      red_f[t] = max(red_f[t], red_f[t + s]);
    }
  }
  workgroupBarrier();
  return red_f[0];
}

fn sum_u(v: u32, t: u32) -> u32 {
  workgroupBarrier();
  red_u[t] = v;
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (t < s) {
      red_u[t] += red_u[t + s];
    }
  }
  workgroupBarrier();
  return red_u[0];
}

fn min_u(v: u32, t: u32) -> u32 {
  workgroupBarrier();
  red_u[t] = v;
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (t < s) {
      red_u[t] = min(red_u[t], red_u[t + s]);
    }
  }
  workgroupBarrier();
  return red_u[0];
}
