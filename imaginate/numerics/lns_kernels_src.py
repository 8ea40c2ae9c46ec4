"""The C++ source of imaginate.numerics.lns_kernels (compiled there with torch's load_inline on first use):
the LNS quantiser (nearest and counter-based stochastic rounding) and the fused native LNS-Madam step."""

_CPP = r"""
#include <ATen/Parallel.h>
#include <ATen/TensorIterator.h>
#include <ATen/cpu/vec/vec.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#ifdef IMAGINATE_MKL_VML
extern "C" {  // exported by libtorch_cpu (MKL), LP64 interface: the calls torch's log2 makes
void vmsLog2(const int n, const float* a, float* r, long long mode);
void vmdLog2(const int n, const double* a, double* r, long long mode);
}
static constexpr long long kVmlMode = 0x2 | 0x140000 | 0x100;  // VML_HA | VML_FTZDAZ_OFF | VML_ERRMODE_IGNORE
static constexpr long long kVmlFast = 0x1 | 0x140000 | 0x100;  // VML_LA (stochastic rounding: no bits to match)
static inline void log2_block(const float* in, float* out, int64_t n, bool fast = false) {
  vmsLog2((int)n, in, out, fast ? kVmlFast : kVmlMode);
}
static inline void log2_block(const double* in, double* out, int64_t n, bool fast = false) {
  vmdLog2((int)n, in, out, fast ? kVmlFast : kVmlMode);
}
#else
template <typename T>
static inline void log2_block(const T* in, T* out, int64_t n, bool fast = false) {  // as ATen's vml::vlog2
  using Vec = at::vec::Vectorized<T>;
  int64_t i = 0;
  for (; i + Vec::size() <= n; i += Vec::size()) Vec::loadu(in + i).log2().store(out + i);
  if (i < n) Vec::loadu(in + i, n - i).log2().store(out + i, n - i);
}
#endif

static constexpr int64_t kBlock = 1024;

// log2 of a positive normal finite float to ~3e-7 + 2^-23 |result| (exponent + atanh series of the mantissa
// in [sqrt(1/2), sqrt(2))), branch-free so the compiler vectorises it. Nearest rounding uses it only where
// the result is far from a rounding boundary (and r is normal); elsewhere it takes MKL's/ATen's log2
static inline float fast_log2f(float r) {
  uint32_t bits;
  std::memcpy(&bits, &r, 4);
  const uint32_t frac = bits & 0x7FFFFFu;
  const int32_t big = (int32_t)(frac > 0x3504F3u);  // mantissa above sqrt(2): halve it, one octave more
  const float e = (float)((int32_t)(bits >> 23) - 127 + big);
  const uint32_t mantissa = frac | (0x3F800000u - ((uint32_t)big << 23));
  float m;
  std::memcpy(&m, &mantissa, 4);
  const float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;  // log2(m) = 2 / ln 2 * atanh(s)
  float poly = std::fma(s2, 0.32059889797532520f, 0.41219858311113244f);
  poly = std::fma(s2, poly, 0.57707801635558536f);
  poly = std::fma(s2, poly, 0.96179669392597560f);
  poly = std::fma(s2, poly, 2.88539008177792680f);
  return std::fma(s, poly, e);
}
static inline void fast_log2_block(const float* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = fast_log2f(in[i]);
}
static inline void fast_log2_block(const double* in, double* out, int64_t n) { log2_block(in, out, n); }

static inline uint64_t splitmix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
static inline uint32_t mix32(uint32_t x) {  // a bijective 32-bit integer hash (two multiply-xorshift rounds)
  x ^= x >> 16; x *= 0x7FEB352DU; x ^= x >> 15; x *= 0x846CA68BU; x ^= x >> 16;
  return x;
}
// uniform numbers in [0, 1) of elements start .. start + m - 1: float32 from 32-bit hashes (vectorisable),
// 24 bits; float64 from splitmix64, 53 bits
static inline void fill_uniform(float* u, int64_t m, uint64_t seed, int64_t start) {
  const uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32) ^ mix32((uint32_t)((uint64_t)start >> 32));
  const uint32_t base = (uint32_t)start + k0;
  for (int64_t j = 0; j < m; ++j) u[j] = (float)(int32_t)(mix32(mix32(base + (uint32_t)j) ^ k1) >> 8) * 0x1p-24f;
}
static inline void fill_uniform(double* u, int64_t m, uint64_t seed, int64_t start) {
  for (int64_t j = 0; j < m; ++j)
    u[j] = (double)(splitmix64(seed + (uint64_t)(start + j) * 0x9E3779B97F4A7C15ULL) >> 11) * 0x1p-53;
}

template <typename T>
static T max_abs(const T* x, int64_t n) {
  using Vec = at::vec::Vectorized<T>;
  return at::parallel_reduce(0, n, 32768, T(0), [&](int64_t begin, int64_t end, T acc) {
    Vec m(T(0));
    int64_t i = begin;
    for (; i + Vec::size() <= end; i += Vec::size()) m = at::vec::maximum(m, Vec::loadu(x + i).abs());
    T buf[Vec::size()];
    m.store(buf);
    for (int64_t k = 0; k < Vec::size(); ++k) acc = std::max(acc, buf[k]);
    for (; i < end; ++i) acc = std::max(acc, std::abs(x[i]));
    return acc;
  }, [](T a, T b) { return std::max(a, b); });
}

template <typename T>
static void quantize_impl(const T* x, T* out, int64_t n, T scale, T gamma, T max_e, bool stochastic, uint64_t seed) {
  using Vec = at::vec::Vectorized<T>;
  // magnitudes of codes 0 .. max_e, computed with the vectorised exp2 the direct path uses (same bits),
  // when the tensor is large enough to pay for the table
  std::vector<T> magnitudes;
  const T* table = nullptr;
  if (max_e < 8192 && n >= 4 * ((int64_t)max_e + 1)) {
    const int64_t size = (int64_t)max_e + 1;
    magnitudes.resize(size + Vec::size());
    T codes[Vec::size()];
    for (int64_t k = 0; k < size; k += Vec::size()) {
      for (int64_t j = 0; j < Vec::size(); ++j) codes[j] = (T)(k + j);
      (Vec(scale) * (Vec::loadu(codes) * Vec(T(-1) / gamma)).exp2()).store(magnitudes.data() + k);
    }
    table = magnitudes.data();
  }
  at::parallel_for(0, n, 16384, [&](int64_t begin, int64_t end) {
    alignas(64) T ratio[kBlock];
    alignas(64) T lg[kBlock];
    alignas(64) T uni[kBlock];
    const Vec vgamma(gamma), vneg(T(-1) / gamma), vscale(scale), vmax(max_e), vzero(T(0)), vone(T(1));
    const Vec vsign(T(-0.0));
    const Vec vmin_normal(std::numeric_limits<T>::min());
    for (int64_t b = begin; b < end; b += kBlock) {
      const int64_t m = std::min(kBlock, end - b);
      for (int64_t i = 0; i < m; ++i) ratio[i] = scale / std::abs(x[b + i]);  // +inf for 0
      fast_log2_block(ratio, lg, m);  // float: checked below; double: MKL / ATen
      if (stochastic) fill_uniform(uni, m, seed, b);
      for (int64_t i = 0; i < m; i += Vec::size()) {
        const int64_t k = std::min<int64_t>(Vec::size(), m - i);
        Vec t = Vec::loadu(lg + i, k) * vgamma;  // the real-valued exponent
        if (std::is_same<T, float>::value) {  // lanes the fast log2 cannot settle: the exact one (rare)
          const Vec r = Vec::loadu(ratio + i, k);
          const Vec vinf(std::numeric_limits<T>::infinity());
          t = Vec::blendv(t, vinf, r == vinf);  // x = 0: log2(+inf) = +inf, flushed to zero below
          Vec bad = (r < vmin_normal) | (r != r);  // x = inf (r = 0), NaN, subnormal ratios
          if (!stochastic) {  // within a safe margin of a rounding boundary (half-integer)
            const Vec margin = vgamma * Vec(T(1e-6)) + t.abs() * Vec(T(0x1p-19));
            bad = bad | ((t - t.floor() - Vec(T(0.5))).abs() < margin);
          }
          if (bad.zero_mask() != (1 << Vec::size()) - 1) {
            alignas(64) T exact[Vec::size()];
            log2_block(ratio + i, exact, k);
            t = Vec::loadu(exact, k) * vgamma;
          }
        }
        Vec e;
        if (stochastic) {  // floor + (frac - u > 0): up with probability frac
          Vec fl = t.floor();
          e = fl + (((t - fl) - Vec::loadu(uni + i, k)) > vzero & vone);
        } else {
          e = t.round();  // half to even
        }
        Vec zero = e > vmax;  // below the smallest magnitude (and 0): flush
        Vec mag;
        if (table != nullptr) {  // the same values, looked up: table[k] = scale * exp2(k * (-1 / gamma))
          const Vec k_safe = Vec::blendv(vzero, at::vec::clamp_min(e, vzero), e <= vmax);  // NaN, flushed: 0
          mag = at::vec::gather<sizeof(T)>(table, at::vec::convert_to_int_of_same_size(k_safe));
          mag = Vec::blendv(mag, e, e.isnan());
        } else {
          mag = vscale * (at::vec::clamp_min(e, vzero) * vneg).exp2();
        }
        Vec value = mag | (Vec::loadu(x + b + i, k) & vsign);  // copysign (mag >= 0)
        Vec::blendv(value, vzero, zero).store(out + b + i, k);
      }
    }
  });
}

// torch's exp2 (cpu_kernel_vec) takes SLEEF's vectorised exp2 on pairs of vectors and glibc's scalar exp2 on
// the last (length % (2 * Vec::size())) elements of each chunk that at::parallel_for hands a thread; nearest
// rounding redoes those elements the scalar way, so that it equals lns_quantize at any thread count
template <typename T>
static void scalar_tails(const T* x, T* out, int64_t n, T scale, T gamma, T max_e) {
  using Vec = at::vec::Vectorized<T>;
  const int64_t pair = 2 * Vec::size(), grain = at::internal::GRAIN_SIZE;
  int64_t chunk = n;
  if (n >= grain && at::get_num_threads() > 1) {
    const int64_t threads = std::min<int64_t>(at::get_num_threads(), (n + grain - 1) / grain);
    chunk = (n + threads - 1) / threads;
  }
  T ratio[2 * Vec::size()], lg[2 * Vec::size()];
  for (int64_t begin = 0; begin < n; begin += chunk) {
    const int64_t end = std::min(n, begin + chunk), start = end - (end - begin) % pair;
    for (int64_t i = start; i < end; ++i) ratio[i - start] = scale / std::abs(x[i]);
    if (end > start) log2_block(ratio, lg, end - start);
    for (int64_t i = start; i < end; ++i) {
      const T e = std::nearbyint(lg[i - start] * gamma);
      const T mag = scale * std::exp2(std::max(e, T(0)) * (T(-1) / gamma));
      out[i] = e > max_e ? T(0) : std::copysign(mag, x[i]);
    }
  }
}

at::Tensor lns_quantize(at::Tensor x, double scale, int64_t gamma, int64_t max_code, bool stochastic, int64_t seed) {
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous(), "lns_quantize: a contiguous CPU tensor");
  at::Tensor out = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lns_quantize", [&] {
    const scalar_t* src = x.data_ptr<scalar_t>();
    scalar_t s = (scalar_t)scale;
    if (scale < 0) {  // the max-abs scale; 1 for an all-zero tensor
      s = max_abs(src, x.numel());
      if (!(s > 0)) s = 1;
    }
    quantize_impl<scalar_t>(src, out.data_ptr<scalar_t>(), x.numel(), s, (scalar_t)gamma,
                            (scalar_t)(max_code - 1), stochastic, (uint64_t)seed);
    if (!stochastic) scalar_tails<scalar_t>(src, out.data_ptr<scalar_t>(), x.numel(), s, (scalar_t)gamma,
                                            (scalar_t)(max_code - 1));
  });
  return out;
}

// moment kinds: 0 fp32/fp64 (in place), 1 bf16 (raw uint16 bits), 2 lns8 (uint8 codes, table of the old scale);
// bf16 and lns8 store stochastically with 16-bit random numbers cut from 64-bit words the caller drew through
// torch as random_u16 draws them: per piece of `chunk` elements, piece j of a chunk = bits 16 (j % 3) .. of
// its word j / 3 (bits 48-63 unused)
static constexpr int64_t kChunk = 65536;  // imaginate.optim.multi_tensor.SLAB
static inline int32_t random16(const int64_t* words, int64_t i) {
  const int64_t c = i / kChunk, j = i - c * kChunk;
  return (int32_t)(((uint64_t)words[c * ((kChunk + 2) / 3) + j / 3] >> (16 * (j % 3))) & 0xFFFF);
}

template <typename T, typename P, int K>
static void madam_impl(T* p, const T* g, P* packed, void* moment, const T* table, const int64_t* rbits,
                       const float* vtable, float lns8_scale, int64_t n, T beta, T one_minus_beta,
                       T bias_correction, bool bounded, T g_bound, T steps, bool scale_move, bool round_move,
                       int max_code, int code_mask, bool wide, bool underflow_zero) {
  using Vec = at::vec::Vectorized<T>;
  const int sign_shift = wide ? 15 : 7;
  at::parallel_for(0, n, 16384, [&](int64_t begin, int64_t end) {
    alignas(64) T moves[kBlock];
    alignas(64) T vbuf[kBlock];
    alignas(64) float ratio[kBlock];
    alignas(64) float lg[kBlock];
    const Vec vbeta(beta), vomb(one_minus_beta), vbc(bias_correction), vzero(T(0)), vsteps(steps);
    const Vec vlo(bounded ? -g_bound : -INFINITY), vhi(bounded ? g_bound : INFINITY);
    const Vec vmc((T)max_code), vnmc((T)-max_code);
    for (int64_t b = begin; b < end; b += kBlock) {
      const int64_t m = std::min(kBlock, end - b);
      T* v = K == 0 ? (T*)moment + b : vbuf;
      if (K == 1) {
        const uint16_t* stored = (const uint16_t*)moment + b;
        for (int64_t i = 0; i < m; ++i) {
          const uint32_t w = (uint32_t)stored[i] << 16;
          float f;
          std::memcpy(&f, &w, 4);
          vbuf[i] = (T)f;
        }
      } else if (K == 2) {
        const uint8_t* stored = (const uint8_t*)moment + b;
        for (int64_t i = 0; i < m; ++i) vbuf[i] = (T)vtable[stored[i]];
      }
      for (int64_t i = 0; i < m; i += Vec::size()) {  // the float part, op for op as the multi-tensor step
        const int64_t k = std::min<int64_t>(Vec::size(), m - i);
        const Vec gi = Vec::loadu(g + b + i, k);
        Vec vi = Vec::loadu(v + i, k) * vbeta;
        vi = at::vec::fmadd(vomb * gi, gi, vi);  // addcmul as torch's build computes it (one FMA)
        vi.store(v + i, k);
        Vec gh = gi / (vi / vbc).sqrt();
        gh = Vec::blendv(gh, vzero, gh.isnan());  // 0/0 -> 0
        gh = at::vec::clamp_max(at::vec::clamp_min(gh, vlo), vhi);  // +-g_bound (none: +-inf)
        gh = gh.round();  // half to even
        if (scale_move) {
          gh = gh * vsteps;
          if (round_move) gh = gh.round();
        }
        at::vec::clamp_max(at::vec::clamp_min(gh, vnmc), vmc).store(moves + i, k);
      }
      if (K == 1) {  // add 16 random bits below bf16's mantissa, truncate (moment_store.write_moment)
        uint16_t* stored = (uint16_t*)moment + b;
        for (int64_t i = 0; i < m; ++i) {
          const float f = (float)vbuf[i];
          int32_t w;
          std::memcpy(&w, &f, 4);
          stored[i] = (uint16_t)((uint32_t)((w + random16(rbits, b + i)) & -65536) >> 16);
        }
      } else if (K == 2) {  // stochastic log-domain code against the new scale (moment_store.write_moment)
        uint8_t* stored = (uint8_t*)moment + b;
        for (int64_t i = 0; i < m; ++i) ratio[i] = (1.0f / (float)vbuf[i]) * lns8_scale;  // scale / v, as torch
        log2_block(ratio, lg, m);
        for (int64_t i = 0; i < m; ++i) {
          const float t = 8.0f * lg[i];
          const float fl = std::floor(t);
          const float u = ((float)random16(rbits, b + i) + 0.5f) * (1.0f / 65536.0f);
          float code = fl + (u < t - fl ? 1.0f : 0.0f);
          code = (float)vbuf[i] > 0 ? std::min(std::max(code, 0.0f), 254.0f) : 255.0f;
          stored[i] = (uint8_t)code;
        }
      }
      for (int64_t i = 0; i < m; ++i) {  // the integer part on the packed sign + code
        const int move = (int)moves[i];
        const int bits = wide ? ((int)packed[b + i] & 0xFFFF) : (int)packed[b + i];
        const int negative = bits >> sign_shift;
        const int codes = bits & code_mask;
        const int moved = codes + (negative ? -move : move);  // larger e: smaller |p|
        bool alive = codes < max_code;
        if (underflow_zero) alive = alive && moved <= max_code - 1;
        const int next = alive ? (std::min(std::max(moved, 0), max_code - 1) | (negative << sign_shift)) : max_code;
        packed[b + i] = (P)next;  // int16: bit 15 wraps to the sign
        p[b + i] = table[next];
      }
    }
  });
}

template <typename T, typename P>
static void madam_dispatch(int kind, at::Tensor& p, at::Tensor& g, at::Tensor& packed, at::Tensor& moment,
                           at::Tensor& table, at::Tensor& rbits, at::Tensor& vtable, double lns8_scale, double beta,
                           double one_minus_beta, double bias_correction, double g_bound, double steps,
                           bool scale_move, bool round_move, int max_code, int code_mask, bool wide,
                           bool underflow_zero) {
  const bool bounded = !std::isinf(g_bound);
  const int64_t* r = kind == 0 ? nullptr : rbits.data_ptr<int64_t>();
  const float* vt = kind == 2 ? vtable.data_ptr<float>() : nullptr;
#define IMAGINATE_MADAM(KIND)                                                                                  \
  madam_impl<T, P, KIND>(p.data_ptr<T>(), g.data_ptr<T>(), packed.data_ptr<P>(), moment.data_ptr(),           \
                         table.data_ptr<T>(), r, vt, (float)lns8_scale, p.numel(), (T)beta, (T)one_minus_beta,  \
                         (T)bias_correction, bounded, (T)g_bound, (T)steps, scale_move, round_move, max_code,   \
                         code_mask, wide, underflow_zero)
  if (kind == 0) IMAGINATE_MADAM(0);
  else if (kind == 1) IMAGINATE_MADAM(1);
  else IMAGINATE_MADAM(2);
#undef IMAGINATE_MADAM
}

void lns_madam_step(at::Tensor p, at::Tensor g, at::Tensor packed, at::Tensor moment, at::Tensor table,
                    int64_t kind, at::Tensor rbits, at::Tensor vtable, double lns8_scale, double beta,
                    double one_minus_beta, double bias_correction, double g_bound, double steps, bool scale_move,
                    bool round_move, int64_t max_code, int64_t bits, bool underflow_zero) {
  const bool wide = bits > 8;
  const int code_mask = (1 << (bits - 1)) - 1;
  TORCH_CHECK(p.is_contiguous() && g.is_contiguous() && packed.is_contiguous() && moment.is_contiguous(),
              "contiguous");
  TORCH_CHECK(packed.scalar_type() == (wide ? at::kShort : at::kByte), "packed dtype");
  TORCH_CHECK(table.numel() == (wide ? 65536 : 256), "table size");
  const auto moment_dtype = kind == 0 ? p.scalar_type() : (kind == 1 ? at::kBFloat16 : at::kByte);
  TORCH_CHECK(moment.scalar_type() == moment_dtype && moment.numel() == p.numel(), "moment dtype");
  const int64_t n = p.numel(), words = (n / kChunk) * ((kChunk + 2) / 3) + (n % kChunk + 2) / 3;
  TORCH_CHECK(kind == 0 || (p.scalar_type() == at::kFloat && rbits.scalar_type() == at::kLong &&
                            rbits.is_contiguous() && rbits.numel() == words), "random words");
  TORCH_CHECK(kind != 2 || (vtable.scalar_type() == at::kFloat && vtable.numel() == 256), "lns8 table");
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "lns_madam_step", [&] {
    if (wide) {
      madam_dispatch<scalar_t, int16_t>((int)kind, p, g, packed, moment, table, rbits, vtable, lns8_scale, beta,
          one_minus_beta, bias_correction, g_bound, steps, scale_move, round_move, (int)max_code, code_mask, true,
          underflow_zero);
    } else {
      madam_dispatch<scalar_t, uint8_t>((int)kind, p, g, packed, moment, table, rbits, vtable, lns8_scale, beta,
          one_minus_beta, bias_correction, g_bound, steps, scale_move, round_move, (int)max_code, code_mask, false,
          underflow_zero);
    }
  });
}
"""
