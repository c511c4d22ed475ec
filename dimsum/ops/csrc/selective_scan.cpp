// Selective scan (Mamba-1 S6 recurrence) for CPU: forward and backward.
//
//   dt_t = softplus?(delta_t + delta_bias)
//   h_t  = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t        (state: N floats per (b, d))
//   y_t  = <C_t, h_t> + D * u_t ;  out_t = y_t * silu(z_t)  (gate optional)
//
// Layout contract (the Python wrapper prepares it):
//   u, delta, z, out : (batch, dim, L)        float32, contiguous
//   A                : (dim, Np)              float32, Np = N padded to a multiple of 8 with 0
//   B, C             : (batch, G, L, Np)      float32, time-major so the state loop is contiguous
//   D, delta_bias    : (dim,) or empty
// Padding states have A = B = C = 0, so they stay 0 and contribute nothing.
//
// Parallelism: at::parallel_for over (batch, dim) rows; each row keeps its state in registers
// (AVX2: Np/8 ymm vectors) and loops over L sequentially. exp is a vectorised Cephes-style
// polynomial (~1-2 ulp) because libm's scalar expf would dominate the run time.
//
// Registered as torch.ops.dimsum_scan.{fwd,bwd,fwd_tokens,conv_tokens,gelu_gate} (no pybind:
// faster to compile).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define DIMSUM_SCAN_AVX2 1
#endif

namespace {

// ---------------------------------------------------------------------------------------------
// 8-wide float vector: AVX2 intrinsics when available, otherwise a plain array (the compiler may
// still auto-vectorise it).
// ---------------------------------------------------------------------------------------------
#ifdef DIMSUM_SCAN_AVX2
using vf = __m256;
inline vf vload(const float* p) { return _mm256_loadu_ps(p); }
inline void vstore(float* p, vf a) { _mm256_storeu_ps(p, a); }
inline vf vset1(float a) { return _mm256_set1_ps(a); }
inline vf vzero() { return _mm256_setzero_ps(); }
inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
inline vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
inline vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }  // a * b + c
inline float vhsum(vf a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  __m128 sh = _mm_movehdup_ps(s);
  s = _mm_add_ps(s, sh);
  sh = _mm_movehl_ps(sh, s);
  s = _mm_add_ss(s, sh);
  return _mm_cvtss_f32(s);
}
// exp(x) for float32, Cephes expf range reduction + degree-6 polynomial. Inputs below ~-87.3
// return exactly 0 (true result is a denormal < 1.2e-38); inputs above 88.7 saturate.
inline vf vexp(vf x) {
  const vf hi = _mm256_set1_ps(88.3762626647949f);
  const vf lo = _mm256_set1_ps(-87.3365447504f);
  const vf underflow = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_max_ps(_mm256_min_ps(x, hi), lo);
  // n = round(x / ln2); r = x - n * ln2 (ln2 split in two for exactness)
  vf fx = _mm256_floor_ps(vfma(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  const vf z = vmul(x, x);
  vf y = _mm256_set1_ps(1.9875691500E-4f);
  y = vfma(y, x, _mm256_set1_ps(1.3981999507E-3f));
  y = vfma(y, x, _mm256_set1_ps(8.3334519073E-3f));
  y = vfma(y, x, _mm256_set1_ps(4.1665795894E-2f));
  y = vfma(y, x, _mm256_set1_ps(1.6666665459E-1f));
  y = vfma(y, x, _mm256_set1_ps(5.0000001201E-1f));
  y = vfma(y, z, vadd(x, _mm256_set1_ps(1.0f)));
  // scale by 2^n via the exponent bits
  __m256i e = _mm256_cvttps_epi32(fx);
  e = _mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(0x7f)), 23);
  y = vmul(y, _mm256_castsi256_ps(e));
  return _mm256_andnot_ps(underflow, y);
}
// log(x) for positive normal float32 (Cephes logf, ~1 ulp).
inline vf vlog(vf x) {
  __m256i e = _mm256_srli_epi32(_mm256_castps_si256(x), 23);
  x = _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(~0x7f800000)));
  x = _mm256_or_ps(x, _mm256_set1_ps(0.5f));  // mantissa in [0.5, 1)
  vf fe = vadd(_mm256_cvtepi32_ps(_mm256_sub_epi32(e, _mm256_set1_epi32(0x7f))), vset1(1.f));
  const vf small = _mm256_cmp_ps(x, vset1(0.707106781186547524f), _CMP_LT_OQ);
  const vf tmp = _mm256_and_ps(x, small);
  x = _mm256_sub_ps(x, vset1(1.f));
  fe = _mm256_sub_ps(fe, _mm256_and_ps(vset1(1.f), small));
  x = vadd(x, tmp);
  const vf z = vmul(x, x);
  vf y = vset1(7.0376836292E-2f);
  y = vfma(y, x, vset1(-1.1514610310E-1f));
  y = vfma(y, x, vset1(1.1676998740E-1f));
  y = vfma(y, x, vset1(-1.2420140846E-1f));
  y = vfma(y, x, vset1(1.4249322787E-1f));
  y = vfma(y, x, vset1(-1.6668057665E-1f));
  y = vfma(y, x, vset1(2.0000714765E-1f));
  y = vfma(y, x, vset1(-2.4999993993E-1f));
  y = vfma(y, x, vset1(3.3333331174E-1f));
  y = vmul(vmul(y, x), z);
  y = vfma(fe, vset1(-2.12194440e-4f), y);
  y = vfma(z, vset1(-0.5f), y);
  x = vadd(x, y);
  return vfma(fe, vset1(0.693359375f), x);
}
// softplus(x) = max(x, 0) + log1p(exp(-|x|)); log1p(e) = log(1 + e) * e / ((1 + e) - 1) keeps
// full precision for tiny e (Goldberg's trick).
inline vf vsoftplus(vf x) {
  const vf e = vexp(_mm256_or_ps(x, vset1(-0.f)));  // exp(-|x|)
  const vf w = vadd(vset1(1.f), e);
  const vf d = _mm256_sub_ps(w, vset1(1.f));
  const vf lp = _mm256_div_ps(vmul(vlog(w), e), d);
  const vf l1p = _mm256_blendv_ps(lp, e, _mm256_cmp_ps(d, vzero(), _CMP_EQ_OQ));
  return vadd(_mm256_max_ps(x, vzero()), l1p);
}
inline vf vsigmoid(vf x) {
  return _mm256_div_ps(vset1(1.f), vadd(vset1(1.f), vexp(_mm256_sub_ps(vzero(), x))));
}
#else
struct vf {
  float a[8];
};
inline vf vload(const float* p) {
  vf r;
  for (int i = 0; i < 8; ++i) r.a[i] = p[i];
  return r;
}
inline void vstore(float* p, vf x) {
  for (int i = 0; i < 8; ++i) p[i] = x.a[i];
}
inline vf vset1(float s) {
  vf r;
  for (int i = 0; i < 8; ++i) r.a[i] = s;
  return r;
}
inline vf vzero() { return vset1(0.f); }
inline vf vadd(vf x, vf y) {
  for (int i = 0; i < 8; ++i) x.a[i] += y.a[i];
  return x;
}
inline vf vmul(vf x, vf y) {
  for (int i = 0; i < 8; ++i) x.a[i] *= y.a[i];
  return x;
}
inline vf vfma(vf x, vf y, vf c) {
  for (int i = 0; i < 8; ++i) c.a[i] = std::fma(x.a[i], y.a[i], c.a[i]);
  return c;
}
inline float vhsum(vf x) {
  float s = 0.f;
  for (int i = 0; i < 8; ++i) s += x.a[i];
  return s;
}
inline vf vexp(vf x) {
  for (int i = 0; i < 8; ++i) x.a[i] = std::exp(x.a[i]);
  return x;
}
inline vf vsoftplus(vf x) {
  for (int i = 0; i < 8; ++i) x.a[i] = x.a[i] <= 20.f ? std::log1p(std::exp(x.a[i])) : x.a[i];
  return x;
}
inline vf vsigmoid(vf x) {
  for (int i = 0; i < 8; ++i) x.a[i] = 1.f / (1.f + std::exp(-x.a[i]));
  return x;
}
#endif

// Scalar versions for the L % 8 tails (same maths as torch: threshold 20 for softplus).
inline float softplus(float v) { return v <= 20.f ? std::log1p(std::exp(v)) : v; }
inline float sigmoid(float v) { return 1.f / (1.f + std::exp(-v)); }

// Per-row inputs shared by the forward and backward kernels.
struct Row {
  const float* u;   // (L,)
  const float* dt;  // (L,) delta after bias/softplus
  const float* A;   // (Np,)
  const float* B;   // (L, Np)
  const float* C;   // (L, Np)
  int64_t L;
  int64_t Np;
};

// Forward scan of one row. y (L,) must hold D*u on entry; <C_t, h_t> is added to it.
// If hbuf/dabuf are given, every h_t and exp(dt_t*A) is stored there ((L, Np) each) for the
// backward pass. last (Np,) receives h_{L-1}. KV = number of 8-wide vectors kept in registers.
template <int KV, bool kStore>
void scan_row_fwd(const Row& r, float* y, float* last, float* hbuf, float* dabuf) {
  constexpr int BS = 8 * KV;
  for (int64_t n0 = 0; n0 < r.Np; n0 += BS) {
    vf a[KV], h[KV];
    for (int k = 0; k < KV; ++k) {
      a[k] = vload(r.A + n0 + 8 * k);
      h[k] = vzero();
    }
    for (int64_t t = 0; t < r.L; ++t) {
      const vf vdt = vset1(r.dt[t]);
      const vf vdtu = vset1(r.dt[t] * r.u[t]);
      const float* Bt = r.B + t * r.Np + n0;
      const float* Ct = r.C + t * r.Np + n0;
      vf acc = vzero();
      for (int k = 0; k < KV; ++k) {
        const vf da = vexp(vmul(vdt, a[k]));
        h[k] = vfma(da, h[k], vmul(vdtu, vload(Bt + 8 * k)));
        acc = vfma(h[k], vload(Ct + 8 * k), acc);
        if constexpr (kStore) {
          vstore(hbuf + t * r.Np + n0 + 8 * k, h[k]);
          vstore(dabuf + t * r.Np + n0 + 8 * k, da);
        }
      }
      y[t] += vhsum(acc);
    }
    if (last != nullptr) {
      for (int k = 0; k < KV; ++k) vstore(last + n0 + 8 * k, h[k]);
    }
  }
}

// Reverse scan of one row, given the stored states. With g_t = dLoss/dh_t:
//   g_t = exp(dt_{t+1} A) g_{t+1} + dy_t C_t   (g_L = dlast, exp(dt_L A) = 1)
//   q_t = g_t * exp(dt_t A) * h_{t-1}           = dLoss/d(dt_t A)
//   dA += q_t dt_t ; ddt_t += <q_t, A> + u_t <g_t, B_t> ; du_t += dt_t <g_t, B_t>
//   dB_t += g_t dt_t u_t ; dC_t += dy_t h_t
// ddt, du (L,) and dB, dC (L, Np) are accumulated into; dA (Np,) is overwritten.
template <int KV>
void scan_row_bwd(const Row& r, const float* dy, const float* dlast, const float* hbuf,
                  const float* dabuf, const float* zeros, float* ddt, float* du, float* dA,
                  float* dB, float* dC) {
  constexpr int BS = 8 * KV;
  for (int64_t n0 = 0; n0 < r.Np; n0 += BS) {
    vf a[KV], g[KV], da_next[KV], dA_acc[KV];
    for (int k = 0; k < KV; ++k) {
      a[k] = vload(r.A + n0 + 8 * k);
      g[k] = dlast != nullptr ? vload(dlast + n0 + 8 * k) : vzero();
      da_next[k] = vset1(1.f);
      dA_acc[k] = vzero();
    }
    for (int64_t t = r.L - 1; t >= 0; --t) {
      const vf vdy = vset1(dy[t]);
      const vf vdt = vset1(r.dt[t]);
      const vf vdtu = vset1(r.dt[t] * r.u[t]);
      const int64_t off = t * r.Np + n0;
      const float* hprev = t > 0 ? hbuf + off - r.Np : zeros + n0;
      vf s1 = vzero(), s2 = vzero();
      for (int k = 0; k < KV; ++k) {
        const int64_t o = off + 8 * k;
        const vf da = vload(dabuf + o);
        g[k] = vfma(da_next[k], g[k], vmul(vdy, vload(r.C + o)));
        const vf q = vmul(vmul(g[k], da), vload(hprev + 8 * k));
        dA_acc[k] = vfma(q, vdt, dA_acc[k]);
        s1 = vfma(q, a[k], s1);
        const vf bb = vload(r.B + o);
        s2 = vfma(g[k], bb, s2);
        vstore(dB + o, vfma(g[k], vdtu, vload(dB + o)));
        vstore(dC + o, vfma(vdy, vload(hbuf + o), vload(dC + o)));
        da_next[k] = da;
      }
      const float gb = vhsum(s2);
      ddt[t] += vhsum(s1) + r.u[t] * gb;
      du[t] += r.dt[t] * gb;
    }
    for (int k = 0; k < KV; ++k) vstore(dA + n0 + 8 * k, dA_acc[k]);
  }
}

struct Dims {
  int64_t batch, dim, L, Np, G;
};

Dims check_inputs(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                  const at::Tensor& B, const at::Tensor& C, const std::optional<at::Tensor>& D,
                  const std::optional<at::Tensor>& z,
                  const std::optional<at::Tensor>& delta_bias) {
  auto f32c = [](const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
    TORCH_CHECK(t.scalar_type() == at::kFloat, name, " must be float32");
    TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  };
  f32c(u, "u");
  f32c(delta, "delta");
  f32c(A, "A");
  f32c(B, "B");
  f32c(C, "C");
  TORCH_CHECK(u.dim() == 3 && delta.sizes() == u.sizes(), "u, delta must be (batch, dim, L)");
  Dims s{u.size(0), u.size(1), u.size(2), A.size(1), B.size(1)};
  TORCH_CHECK(A.dim() == 2 && A.size(0) == s.dim && s.Np % 8 == 0, "A must be (dim, 8k)");
  TORCH_CHECK(B.dim() == 4 && B.size(0) == s.batch && B.size(2) == s.L && B.size(3) == s.Np,
              "B must be (batch, G, L, Np)");
  TORCH_CHECK(C.sizes() == B.sizes(), "C must match B");
  TORCH_CHECK(s.G > 0 && s.dim % s.G == 0, "dim must be divisible by the number of groups");
  if (D) {
    f32c(*D, "D");
    TORCH_CHECK(D->numel() == s.dim, "D must be (dim,)");
  }
  if (delta_bias) {
    f32c(*delta_bias, "delta_bias");
    TORCH_CHECK(delta_bias->numel() == s.dim, "delta_bias must be (dim,)");
  }
  if (z) {
    f32c(*z, "z");
    TORCH_CHECK(z->sizes() == u.sizes(), "z must match u");
  }
  return s;
}

// Row-wise elementwise helpers, vectorised over t (scalar per-step transcendentals would cost
// as much as the scan itself).

// dt = softplus?(delta + bias); v = delta + bias (kept for the backward) if v != nullptr.
inline void row_dt(const float* delta, float bias, bool use_softplus, int64_t L, float* dt,
                   float* v) {
  int64_t t = 0;
  const vf vb = vset1(bias);
  for (; t + 8 <= L; t += 8) {
    const vf x = vadd(vload(delta + t), vb);
    if (v != nullptr) vstore(v + t, x);
    vstore(dt + t, use_softplus ? vsoftplus(x) : x);
  }
  for (; t < L; ++t) {
    const float x = delta[t] + bias;
    if (v != nullptr) v[t] = x;
    dt[t] = use_softplus ? softplus(x) : x;
  }
}

// out = y * silu(z)
inline void row_gate(const float* y, const float* z, int64_t L, float* out) {
  int64_t t = 0;
  for (; t + 8 <= L; t += 8) {
    const vf zz = vload(z + t);
    vstore(out + t, vmul(vload(y + t), vmul(zz, vsigmoid(zz))));
  }
  for (; t < L; ++t) out[t] = y[t] * z[t] * sigmoid(z[t]);
}

// Gate backward: dy = dout * silu(z); dz = dout * y * silu'(z), silu' = s (1 + z (1 - s)).
inline void row_gate_bwd(const float* dout, const float* y, const float* z, int64_t L, float* dy,
                         float* dz) {
  int64_t t = 0;
  const vf one = vset1(1.f);
  for (; t + 8 <= L; t += 8) {
    const vf zz = vload(z + t), sg = vsigmoid(zz), go = vload(dout + t);
    const vf dsilu = vmul(sg, vfma(zz, vadd(one, vmul(sg, vset1(-1.f))), one));
    vstore(dz + t, vmul(vmul(go, vload(y + t)), dsilu));
    vstore(dy + t, vmul(go, vmul(zz, sg)));
  }
  for (; t < L; ++t) {
    const float zt = z[t], sg = sigmoid(zt);
    dz[t] = dout[t] * y[t] * sg * (1.f + zt * (1.f - sg));
    dy[t] = dout[t] * zt * sg;
  }
}

// ddelta = ddt * softplus'(v) = ddt * sigmoid(v) (or ddt); returns sum_t ddelta.
inline float row_ddelta(const float* ddt, const float* v, bool use_softplus, int64_t L,
                        float* ddelta) {
  int64_t t = 0;
  vf acc = vzero();
  for (; t + 8 <= L; t += 8) {
    vf g = vload(ddt + t);
    if (use_softplus) g = vmul(g, vsigmoid(vload(v + t)));
    vstore(ddelta + t, g);
    acc = vadd(acc, g);
  }
  float sum = vhsum(acc);
  for (; t < L; ++t) {
    ddelta[t] = use_softplus ? ddt[t] * sigmoid(v[t]) : ddt[t];
    sum += ddelta[t];
  }
  return sum;
}

// Returns [out (batch, dim, L), last_state (batch, dim, Np)].
std::vector<at::Tensor> scan_fwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                 const at::Tensor& B, const at::Tensor& C,
                                 const std::optional<at::Tensor>& D,
                                 const std::optional<at::Tensor>& z,
                                 const std::optional<at::Tensor>& delta_bias, bool use_softplus) {
  const Dims s = check_inputs(u, delta, A, B, C, D, z, delta_bias);
  at::Tensor out = at::empty_like(u);
  at::Tensor last = at::empty({s.batch, s.dim, s.Np}, u.options());
  const float* pu = u.data_ptr<float>();
  const float* pdelta = delta.data_ptr<float>();
  const float* pA = A.data_ptr<float>();
  const float* pB = B.data_ptr<float>();
  const float* pC = C.data_ptr<float>();
  const float* pD = D ? D->data_ptr<float>() : nullptr;
  const float* pz = z ? z->data_ptr<float>() : nullptr;
  const float* pbias = delta_bias ? delta_bias->data_ptr<float>() : nullptr;
  float* pout = out.data_ptr<float>();
  float* plast = last.data_ptr<float>();
  const int64_t dpg = s.dim / s.G;
  const bool kv2 = s.Np % 16 == 0;

  at::parallel_for(0, s.batch * s.dim, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> dt(s.L), y(s.L);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / s.dim, d = i % s.dim;
      const int64_t bc = (b * s.G + d / dpg) * s.L * s.Np;
      const float* urow = pu + i * s.L;
      row_dt(pdelta + i * s.L, pbias ? pbias[d] : 0.f, use_softplus, s.L, dt.data(), nullptr);
      const float dd = pD ? pD[d] : 0.f;
      for (int64_t t = 0; t < s.L; ++t) y[t] = dd * urow[t];
      const Row r{urow, dt.data(), pA + d * s.Np, pB + bc, pC + bc, s.L, s.Np};
      float* lrow = plast + i * s.Np;
      if (kv2) {
        scan_row_fwd<2, false>(r, y.data(), lrow, nullptr, nullptr);
      } else {
        scan_row_fwd<1, false>(r, y.data(), lrow, nullptr, nullptr);
      }
      float* orow = pout + i * s.L;
      if (pz != nullptr) {
        row_gate(y.data(), pz + i * s.L, s.L, orow);
      } else {
        std::copy(y.begin(), y.end(), orow);
      }
    }
  });
  return {out, last};
}

// Returns [du, ddelta, dA (dim, Np), dB (batch, G, L, Np), dC, dD (dim,), dz, ddelta_bias (dim,)]
// (dz is empty when z is None). dlast: optional gradient of the final state (batch, dim, Np).
std::vector<at::Tensor> scan_bwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                 const at::Tensor& B, const at::Tensor& C,
                                 const std::optional<at::Tensor>& D,
                                 const std::optional<at::Tensor>& z,
                                 const std::optional<at::Tensor>& delta_bias, bool use_softplus,
                                 const at::Tensor& dout, const std::optional<at::Tensor>& dlast) {
  const Dims s = check_inputs(u, delta, A, B, C, D, z, delta_bias);
  TORCH_CHECK(dout.sizes() == u.sizes() && dout.scalar_type() == at::kFloat && dout.is_contiguous(),
              "dout must be a contiguous float32 tensor shaped like u");
  if (dlast) {
    TORCH_CHECK(dlast->scalar_type() == at::kFloat && dlast->is_contiguous() &&
                    dlast->numel() == s.batch * s.dim * s.Np,
                "dlast must be a contiguous float32 (batch, dim, Np) tensor");
  }
  const int64_t dpg = s.dim / s.G;
  // dB/dC/dA/dD/dbias are sums over rows that run on different threads. Each task owns a
  // contiguous slice ("part") of one group's channels for one batch element and accumulates
  // into its own partial buffer; the partials are summed with torch afterwards.
  const int64_t nthreads = at::get_num_threads();
  const int64_t parts =
      std::min<int64_t>(dpg, std::max<int64_t>(1, (2 * nthreads + s.batch * s.G - 1) /
                                                      (s.batch * s.G)));
  const int64_t per_part = (dpg + parts - 1) / parts;
  auto opts = u.options();
  at::Tensor du = at::empty_like(u);
  at::Tensor ddelta = at::empty_like(u);
  at::Tensor dz = z ? at::empty_like(u) : at::empty({0}, opts);
  at::Tensor dB_part = at::zeros({s.batch, s.G, parts, s.L, s.Np}, opts);
  at::Tensor dC_part = at::zeros({s.batch, s.G, parts, s.L, s.Np}, opts);
  at::Tensor dA_part = at::empty({s.batch, s.dim, s.Np}, opts);
  at::Tensor dD_part = at::empty({s.batch, s.dim}, opts);
  at::Tensor dbias_part = at::empty({s.batch, s.dim}, opts);

  const float* pu = u.data_ptr<float>();
  const float* pdelta = delta.data_ptr<float>();
  const float* pA = A.data_ptr<float>();
  const float* pB = B.data_ptr<float>();
  const float* pC = C.data_ptr<float>();
  const float* pD = D ? D->data_ptr<float>() : nullptr;
  const float* pz = z ? z->data_ptr<float>() : nullptr;
  const float* pbias = delta_bias ? delta_bias->data_ptr<float>() : nullptr;
  const float* pdout = dout.data_ptr<float>();
  const float* pdlast = dlast ? dlast->data_ptr<float>() : nullptr;
  float* pdu = du.data_ptr<float>();
  float* pddelta = ddelta.data_ptr<float>();
  float* pdz = z ? dz.data_ptr<float>() : nullptr;
  float* pdBp = dB_part.data_ptr<float>();
  float* pdCp = dC_part.data_ptr<float>();
  float* pdAp = dA_part.data_ptr<float>();
  float* pdDp = dD_part.data_ptr<float>();
  float* pdbp = dbias_part.data_ptr<float>();
  const bool kv2 = s.Np % 16 == 0;
  const int64_t ntasks = s.batch * s.G * parts;

  at::parallel_for(0, ntasks, 1, [&](int64_t begin, int64_t end) {
    const int64_t LN = s.L * s.Np;
    std::vector<float> hbuf(LN), dabuf(LN), zeros(s.Np, 0.f);
    std::vector<float> dt(s.L), v(s.L), y(s.L), dy(s.L), ddt(s.L);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t p = task % parts, g = (task / parts) % s.G, b = task / (parts * s.G);
      const int64_t bc = (b * s.G + g) * LN;
      float* dBrow = pdBp + task * LN;  // dB_part is laid out (batch, G, parts) == task order
      float* dCrow = pdCp + task * LN;
      const int64_t d_lo = g * dpg + p * per_part;
      const int64_t d_hi = std::min(g * dpg + dpg, d_lo + per_part);
      for (int64_t d = d_lo; d < d_hi; ++d) {
        const int64_t i = b * s.dim + d;
        const float* urow = pu + i * s.L;
        const float* dorow = pdout + i * s.L;
        const float* zrow = pz ? pz + i * s.L : nullptr;
        const float dd = pD ? pD[d] : 0.f;
        row_dt(pdelta + i * s.L, pbias ? pbias[d] : 0.f, use_softplus, s.L, dt.data(), v.data());
        const Row r{urow, dt.data(), pA + d * s.Np, pB + bc, pC + bc, s.L, s.Np};
        // 1) recompute the states (and y, which the gate's gradient needs)
        for (int64_t t = 0; t < s.L; ++t) y[t] = dd * urow[t];
        if (kv2) {
          scan_row_fwd<2, true>(r, y.data(), nullptr, hbuf.data(), dabuf.data());
        } else {
          scan_row_fwd<1, true>(r, y.data(), nullptr, hbuf.data(), dabuf.data());
        }
        // 2) gate and skip connection
        if (zrow != nullptr) {
          row_gate_bwd(dorow, y.data(), zrow, s.L, dy.data(), pdz + i * s.L);
        } else {
          std::copy(dorow, dorow + s.L, dy.begin());
        }
        float* durow = pdu + i * s.L;
        float dD_acc = 0.f;
        for (int64_t t = 0; t < s.L; ++t) {
          dD_acc += dy[t] * urow[t];
          durow[t] = dy[t] * dd;
          ddt[t] = 0.f;
        }
        // 3) reverse scan
        const float* dl = pdlast ? pdlast + i * s.Np : nullptr;
        float* dArow = pdAp + i * s.Np;
        if (kv2) {
          scan_row_bwd<2>(r, dy.data(), dl, hbuf.data(), dabuf.data(), zeros.data(), ddt.data(),
                          durow, dArow, dBrow, dCrow);
        } else {
          scan_row_bwd<1>(r, dy.data(), dl, hbuf.data(), dabuf.data(), zeros.data(), ddt.data(),
                          durow, dArow, dBrow, dCrow);
        }
        // 4) through softplus / bias
        pdDp[i] = dD_acc;
        pdbp[i] = row_ddelta(ddt.data(), v.data(), use_softplus, s.L, pddelta + i * s.L);
      }
    }
  });
  return {du,
          ddelta,
          dA_part.sum(0),
          dB_part.sum(2),
          dC_part.sum(2),
          dD_part.sum(0),
          dz,
          dbias_part.sum(0)};
}

// ---------------------------------------------------------------------------------------------
// Token-major forward for inference: u, delta, z (batch, L, dim) with unit channel stride (any
// row stride, e.g. views into the in_proj output), B, C (batch, L, N) likewise, A (dim, N);
// out (batch, L, dim) contiguous. This is the layout the model's linear layers produce and
// consume, so the transposing copies around the scan disappear (5 per Mamba layer). Each task
// scans 8 channels at once (one vector per state, no horizontal sums); the exp count per
// channel-step is the same as the row kernel's. No last state, no backward: training uses fwd/bwd.
// ---------------------------------------------------------------------------------------------
template <int NS>
void scan_tokens_task(int64_t N, int64_t L, const float* u, int64_t su, const float* delta,
                      int64_t sdelta, const float* z, int64_t sz, const float* B, int64_t sB,
                      const float* C, int64_t sC, const float* At, int64_t dim, float bias_d[8],
                      const float* Dv, bool use_softplus, float* out) {
  constexpr int kMax = NS > 0 ? NS : 64;
  const int64_t n_states = NS > 0 ? NS : N;
  vf a[kMax], h[kMax];
  for (int64_t n = 0; n < n_states; ++n) {
    a[n] = vload(At + n * dim);
    h[n] = vzero();
  }
  const vf vbias = vload(bias_d);
  const vf vD = Dv != nullptr ? vload(Dv) : vzero();
  for (int64_t t = 0; t < L; ++t) {
    const vf x = vadd(vload(delta + t * sdelta), vbias);
    const vf dt = use_softplus ? vsoftplus(x) : x;
    const vf uu = vload(u + t * su);
    const vf dtu = vmul(dt, uu);
    const float* Bt = B + t * sB;
    const float* Ct = C + t * sC;
    vf acc = vmul(vD, uu);
    for (int64_t n = 0; n < n_states; ++n) {
      h[n] = vfma(vexp(vmul(dt, a[n])), h[n], vmul(dtu, vset1(Bt[n])));
      acc = vfma(h[n], vset1(Ct[n]), acc);
    }
    if (z != nullptr) {
      const vf zz = vload(z + t * sz);
      acc = vmul(acc, vmul(zz, vsigmoid(zz)));
    }
    vstore(out + t * dim, acc);
  }
}

at::Tensor scan_fwd_tokens(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                           const at::Tensor& B, const at::Tensor& C,
                           const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& z,
                           const std::optional<at::Tensor>& delta_bias, bool use_softplus) {
  auto check = [](const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat, name,
                " must be a float32 CPU tensor");
    TORCH_CHECK(t.dim() == 3 && t.stride(2) == 1, name, " must be (batch, L, C) with unit C stride");
  };
  check(u, "u");
  check(delta, "delta");
  check(B, "B");
  check(C, "C");
  const int64_t batch = u.size(0), L = u.size(1), dim = u.size(2), N = B.size(2);
  TORCH_CHECK(delta.sizes() == u.sizes(), "delta must match u");
  TORCH_CHECK(dim % 8 == 0, "dim must be a multiple of 8");
  TORCH_CHECK(B.size(0) == batch && B.size(1) == L && C.sizes() == B.sizes(),
              "B, C must be (batch, L, N)");
  TORCH_CHECK(N >= 1 && N <= 64, "at most 64 states");
  TORCH_CHECK(A.dim() == 2 && A.size(0) == dim && A.size(1) == N, "A must be (dim, N)");
  if (z) {
    check(*z, "z");
    TORCH_CHECK(z->sizes() == u.sizes(), "z must match u");
  }
  const at::Tensor At = A.to(at::kFloat).t().contiguous();  // (N, dim): a vector per state
  const at::Tensor Dc = D ? D->to(at::kFloat).contiguous() : at::Tensor();
  const at::Tensor bc = delta_bias ? delta_bias->to(at::kFloat).contiguous() : at::Tensor();
  TORCH_CHECK(!D || Dc.numel() == dim, "D must be (dim,)");
  TORCH_CHECK(!delta_bias || bc.numel() == dim, "delta_bias must be (dim,)");
  at::Tensor out = at::empty({batch, L, dim}, u.options());
  const float* pu = u.data_ptr<float>();
  const float* pdelta = delta.data_ptr<float>();
  const float* pz = z ? z->data_ptr<float>() : nullptr;
  const float* pB = B.data_ptr<float>();
  const float* pC = C.data_ptr<float>();
  const float* pAt = At.data_ptr<float>();
  const float* pD = D ? Dc.data_ptr<float>() : nullptr;
  const float* pbias = delta_bias ? bc.data_ptr<float>() : nullptr;
  float* pout = out.data_ptr<float>();
  const int64_t blocks = dim / 8;
  at::parallel_for(0, batch * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / blocks, d0 = (i % blocks) * 8;
      float bias_d[8];
      for (int k = 0; k < 8; ++k) bias_d[k] = pbias != nullptr ? pbias[d0 + k] : 0.f;
      const float* zb = pz != nullptr ? pz + b * z->stride(0) + d0 : nullptr;
      const int64_t sz = z ? z->stride(1) : 0;
      auto run = [&](auto tag) {
        scan_tokens_task<decltype(tag)::value>(
            N, L, pu + b * u.stride(0) + d0, u.stride(1), pdelta + b * delta.stride(0) + d0,
            delta.stride(1), zb, sz, pB + b * B.stride(0), B.stride(1), pC + b * C.stride(0),
            C.stride(1), pAt + d0, dim, bias_d, pD != nullptr ? pD + d0 : nullptr, use_softplus,
            pout + b * L * dim + d0);
      };
      if (N == 16) {
        run(std::integral_constant<int, 16>{});
      } else {
        run(std::integral_constant<int, 0>{});
      }
    }
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Causal depthwise conv1d (+ optional SiLU) in token layout, for inference: x (batch, L, dim)
// with unit channel stride, weight (dim, K), bias (dim,) or empty; out (batch, L, dim)
// contiguous, out[b, l] = act(bias + sum_k weight[:, k] * x[b, l - K + 1 + k]) (zero before 0).
// Mamba's conv before the scan; one pass instead of K + 1 elementwise passes over strided views.
// ---------------------------------------------------------------------------------------------
at::Tensor conv_tokens(const at::Tensor& x, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias, bool silu) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat, "x must be float32 CPU");
  TORCH_CHECK(x.dim() == 3 && x.stride(2) == 1, "x must be (batch, L, dim) with unit dim stride");
  const int64_t batch = x.size(0), L = x.size(1), dim = x.size(2);
  const at::Tensor w = weight.to(at::kFloat).reshape({dim, -1}).t().contiguous();  // (K, dim)
  const int64_t K = w.size(0);
  const at::Tensor bc = bias ? bias->to(at::kFloat).contiguous() : at::zeros({dim}, x.options());
  TORCH_CHECK(bc.numel() == dim, "bias must be (dim,)");
  at::Tensor out = at::empty({batch, L, dim}, x.options());
  const float* px = x.data_ptr<float>();
  const float* pw = w.data_ptr<float>();
  const float* pb = bc.data_ptr<float>();
  float* pout = out.data_ptr<float>();
  const int64_t sx0 = x.stride(0), sx1 = x.stride(1);
  at::parallel_for(0, batch * L, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / L, l = i % L;
      float* o = pout + i * dim;
      int64_t d = 0;
      for (; d + 8 <= dim; d += 8) {
        vf acc = vload(pb + d);
        for (int64_t k = std::max<int64_t>(0, K - 1 - l); k < K; ++k) {
          acc = vfma(vload(pw + k * dim + d), vload(px + b * sx0 + (l - K + 1 + k) * sx1 + d), acc);
        }
        vstore(o + d, silu ? vmul(acc, vsigmoid(acc)) : acc);
      }
      for (; d < dim; ++d) {
        float acc = pb[d];
        for (int64_t k = std::max<int64_t>(0, K - 1 - l); k < K; ++k) {
          acc += pw[k * dim + d] * px[b * sx0 + (l - K + 1 + k) * sx1 + d];
        }
        o[d] = silu ? acc * sigmoid(acc) : acc;
      }
    }
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// The gated MLP's activation, for inference: h (rows, 2H) = [a | b], the w12 projection without
// its bias (float32, bf16 or fp16; unit last stride, any row stride), bias (2H,) or empty;
// out (rows, H) contiguous in h's dtype:
//   out = gelu_tanh(a + bias_a) * (b + bias_b),  gelu_tanh(a) = a * sigmoid(k (a + 0.044715 a^3))
// with k = 2 sqrt(2 / pi). One pass over h: the bias add that addmm would do as a broadcast
// copy of the whole output, and the five elementwise passes over strided halves, in registers.
// ---------------------------------------------------------------------------------------------
// 8 lanes from float32 / bf16 / fp16 memory, computed in float32; `n` < 8 at a row's tail.
template <typename T>
inline vf load8(const T* p) {
  float buf[8];
  for (int i = 0; i < 8; ++i) buf[i] = static_cast<float>(p[i]);  // vectorised: a fixed count
  return vload(buf);
}
template <>
inline vf load8<float>(const float* p) {
  return vload(p);
}
template <typename T>
inline void store8(T* p, vf v) {
  float buf[8];
  vstore(buf, v);
  for (int i = 0; i < 8; ++i) p[i] = static_cast<T>(buf[i]);
}
template <>
inline void store8<float>(float* p, vf v) {
  vstore(p, v);
}
template <typename T>
inline vf load_tail(const T* p, int64_t n) {
  float buf[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  for (int64_t i = 0; i < n; ++i) buf[i] = static_cast<float>(p[i]);
  return vload(buf);
}
template <typename T>
inline void store_tail(T* p, vf v, int64_t n) {
  float buf[8];
  vstore(buf, v);
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(buf[i]);
}

inline vf gelu_gate8(vf a, vf b) {
  const vf k = vset1(1.5957691216057308f), c = vset1(0.044715f * 1.5957691216057308f);
  const vf z = vmul(a, vfma(c, vmul(a, a), k));  // k (a + 0.044715 a^3)
  return vmul(vmul(a, vsigmoid(z)), b);
}

template <typename T>
void gelu_gate_rows(const at::Tensor& h, const float* bias, at::Tensor& out) {
  const int64_t rows = h.size(0), H = h.size(1) / 2, sh = h.stride(0);
  const T* ph = h.data_ptr<T>();
  T* po = out.data_ptr<T>();
  at::parallel_for(0, rows, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* ha = ph + r * sh;
      const T* hb = ha + H;
      T* o = po + r * H;
      int64_t d = 0;
      for (; d + 8 <= H; d += 8) {
        vf a = load8(ha + d), b = load8(hb + d);
        if (bias) {
          a = vadd(a, vload(bias + d));
          b = vadd(b, vload(bias + H + d));
        }
        store8(o + d, gelu_gate8(a, b));
      }
      if (d < H) {
        const int64_t n = H - d;
        vf a = load_tail(ha + d, n), b = load_tail(hb + d, n);
        if (bias) {
          a = vadd(a, load_tail(bias + d, n));
          b = vadd(b, load_tail(bias + H + d, n));
        }
        store_tail(o + d, gelu_gate8(a, b), n);
      }
    }
  });
}

at::Tensor gelu_gate(const at::Tensor& h, const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(h.device().is_cpu() && h.dim() == 2 && h.stride(1) == 1 && h.size(1) % 2 == 0,
              "h must be a CPU (rows, 2H) tensor with unit last stride");
  const at::Tensor bc = bias ? bias->to(at::kFloat).contiguous() : at::Tensor();
  TORCH_CHECK(!bias || bc.numel() == h.size(1), "bias must be (2H,)");
  at::Tensor out = at::empty({h.size(0), h.size(1) / 2}, h.options());
  const float* pb = bias ? bc.data_ptr<float>() : nullptr;
  switch (h.scalar_type()) {
    case at::kFloat: gelu_gate_rows<float>(h, pb, out); break;
    case at::kBFloat16: gelu_gate_rows<at::BFloat16>(h, pb, out); break;
    case at::kHalf: gelu_gate_rows<at::Half>(h, pb, out); break;
    default: TORCH_CHECK(false, "h must be float32, bfloat16 or float16");
  }
  return out;
}

}  // namespace

TORCH_LIBRARY(dimsum_scan, m) {
  m.def(
      "fwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
      "Tensor? delta_bias, bool softplus) -> Tensor[]");
  m.def(
      "bwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
      "Tensor? delta_bias, bool softplus, Tensor dout, Tensor? dlast) -> Tensor[]");
  m.def(
      "fwd_tokens(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
      "Tensor? delta_bias, bool softplus) -> Tensor");
  m.def("conv_tokens(Tensor x, Tensor weight, Tensor? bias, bool silu) -> Tensor");
  m.def("gelu_gate(Tensor h, Tensor? bias) -> Tensor");
}

TORCH_LIBRARY_IMPL(dimsum_scan, CPU, m) {
  m.impl("fwd", &scan_fwd);
  m.impl("bwd", &scan_bwd);
  m.impl("fwd_tokens", &scan_fwd_tokens);
  m.impl("conv_tokens", &conv_tokens);
  m.impl("gelu_gate", &gelu_gate);
}
