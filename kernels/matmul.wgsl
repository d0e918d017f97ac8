// Tiled matrix-matrix products for prefill: y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n]) (+ y[m, n] when
// accumulating), M >= 16 rows. Weights in any format of lib/weights.wgsl, decoded once per tile into workgroup
// memory; activations X and outputs Y in f32 or f16; accumulation in f32.
//
// A workgroup of 16 x 16 threads computes a 64 x 64 block of y, each thread a 4 x 4 sub-block held in four vec4
// accumulators. Each step stages a 64 x 32 slice of x and of W in workgroup memory, k-major, so that a thread
// reads its 4 rows of x and its 4 columns of W at one k as one vec4 each (16 FMAs per 2 loads).

#include "lib/weights.wgsl"

struct Params {
  m: u32,          // rows of x and y
  n: u32,          // weight rows (outputs) in this window
  k: u32,
  x_off: u32,
  x_stride: u32,
  y_off: u32,      // element offset of y[0, first row of the window]
  y_stride: u32,
  w_off: u32,      // byte offset of the window's first row in the weight binding
  w_row: u32,      // bytes per weight row
  bias_off: u32,
  has_bias: u32,
  accumulate: u32,
  tiles_n: u32,    // workgroups along n
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<X>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<Y>;
#ifdef IQ
// The i-quants' grids (lib/weights.wgsl).
@group(0) @binding(5) var<storage, read> grid: array<u32>;
#endif

const TILE: u32 = 64u;
const BK: u32 = 32u;

var<workgroup> xs: array<vec4<f32>, 512>;  // [BK][TILE / 4]
var<workgroup> ws: array<vec4<f32>, 512>;  // [BK][TILE / 4]

fn matmul(format: u32, t: u32, group: u32) {
  let tiles_m = (p.m + TILE - 1u) / TILE;
  if (group >= tiles_m * p.tiles_n) {
    return;  // uniform per workgroup: the dispatch folds into 2D and overshoots
  }
  let m0 = (group / p.tiles_n) * TILE;
  let n0 = (group % p.tiles_n) * TILE;
  let tx = t % 16u;
  let ty = t / 16u;
  // This thread's staging slot: row r of the tile, columns kc..kc+7 of the slice.
  let r = t / (BK / 8u);
  let kc = (t % (BK / 8u)) * 8u;
  let xrow = m0 + r;
  let wrow = n0 + r;
  let rb = p.w_off + wrow * p.w_row;

  var acc0 = vec4<f32>();
  var acc1 = vec4<f32>();
  var acc2 = vec4<f32>();
  var acc3 = vec4<f32>();
  for (var k0 = 0u; k0 < p.k; k0 += BK) {
    let k = k0 + kc;
    var xv = array<f32, 8>();
    if (xrow < p.m) {
      let i = p.x_off + xrow * p.x_stride + k;
      for (var j = 0u; j < 8u; j++) {
        if (k + j < p.k) {
          xv[j] = f32(x[i + j]);
        }
      }
    }
    var wv = W8();
    if (wrow < p.n && k < p.k) {
      wv = load8(format, rb, k, p.k);
    }
    workgroupBarrier();
    for (var j = 0u; j < 8u; j++) {
      xs[(kc + j) * (TILE / 4u) + r / 4u][r % 4u] = xv[j];
    }
    for (var j = 0u; j < 4u; j++) {
      ws[(kc + j) * (TILE / 4u) + r / 4u][r % 4u] = wv.lo[j];
      ws[(kc + 4u + j) * (TILE / 4u) + r / 4u][r % 4u] = wv.hi[j];
    }
    workgroupBarrier();
    // Threads whose rows are all past the last (a prompt's last chunk, a short prompt) only stage: skipping the
    // products spares a CPU adapter, which runs 8 threads as one, the work outright.
    if (m0 + 4u * ty < p.m) {
      for (var kk = 0u; kk < BK; kk++) {
        let a = xs[kk * (TILE / 4u) + ty];
        let b = ws[kk * (TILE / 4u) + tx];
        acc0 = fma(vec4<f32>(a.x), b, acc0);
        acc1 = fma(vec4<f32>(a.y), b, acc1);
        acc2 = fma(vec4<f32>(a.z), b, acc2);
        acc3 = fma(vec4<f32>(a.w), b, acc3);
      }
    }
  }
  let accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + 4u * ty + i;
    if (m >= p.m) {
      continue;
    }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + 4u * tx + j;
      if (n < p.n) {
        var b = 0.0;
        if (p.has_bias != 0u) {
          b = bias[p.bias_off + n];
        }
        let o = p.y_off + m * p.y_stride + n;
        var v = accs[i][j] + b;
        if (p.accumulate != 0u) {
          v += f32(y[o]);
        }
        y[o] = Y(v);
      }
    }
  }
}

@compute @workgroup_size(256)
fn matmul_f32(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
              @builtin(num_workgroups) ng: vec3<u32>) {
  matmul(F32, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(256)
fn matmul_f16(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
              @builtin(num_workgroups) ng: vec3<u32>) {
  matmul(F16, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(256)
fn matmul_q8_0(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
               @builtin(num_workgroups) ng: vec3<u32>) {
  matmul(Q8_0, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(256)
fn matmul_q3_k(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
               @builtin(num_workgroups) ng: vec3<u32>) {
  matmul(Q3_K, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(256)
fn matmul_q4_k(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
               @builtin(num_workgroups) ng: vec3<u32>) {
  matmul(Q4_K, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(256)
fn matmul_q5_k(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
               @builtin(num_workgroups) ng: vec3<u32>) {
  matmul(Q5_K, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(256)
fn matmul_q6_k(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
               @builtin(num_workgroups) ng: vec3<u32>) {
  matmul(Q6_K, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(256)
fn matmul_q4(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
             @builtin(num_workgroups) ng: vec3<u32>) {
  matmul(Q4, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(256)
fn matmul_iq4_nl(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                 @builtin(num_workgroups) ng: vec3<u32>) {
  matmul(IQ4_NL, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(256)
fn matmul_iq4_xs(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                 @builtin(num_workgroups) ng: vec3<u32>) {
  matmul(IQ4_XS, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(256)
fn matmul_q2_k(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
               @builtin(num_workgroups) ng: vec3<u32>) {
  matmul(Q2_K, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(256)
fn matmul_q4_0(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
               @builtin(num_workgroups) ng: vec3<u32>) {
  matmul(Q4_0, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(256)
fn matmul_q4_1(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
               @builtin(num_workgroups) ng: vec3<u32>) {
  matmul(Q4_1, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(256)
fn matmul_q5_0(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
               @builtin(num_workgroups) ng: vec3<u32>) {
  matmul(Q5_0, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(256)
fn matmul_q5_1(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
               @builtin(num_workgroups) ng: vec3<u32>) {
  matmul(Q5_1, t, g.x + g.y * ng.x);
}

#ifdef IQ
@compute @workgroup_size(256)
fn matmul_iq2_xxs(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                  @builtin(num_workgroups) ng: vec3<u32>) {
  matmul(IQ2_XXS, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(256)
fn matmul_iq2_xs(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                 @builtin(num_workgroups) ng: vec3<u32>) {
  matmul(IQ2_XS, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(256)
fn matmul_iq2_s(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                @builtin(num_workgroups) ng: vec3<u32>) {
  matmul(IQ2_S, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(256)
fn matmul_iq3_xxs(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                  @builtin(num_workgroups) ng: vec3<u32>) {
  matmul(IQ3_XXS, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(256)
fn matmul_iq3_s(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                @builtin(num_workgroups) ng: vec3<u32>) {
  matmul(IQ3_S, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(256)
fn matmul_iq1_s(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                @builtin(num_workgroups) ng: vec3<u32>) {
  matmul(IQ1_S, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(256)
fn matmul_iq1_m(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                @builtin(num_workgroups) ng: vec3<u32>) {
  matmul(IQ1_M, t, g.x + g.y * ng.x);
}
#endif
