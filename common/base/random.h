// The project's random-number primitives, in one place. Outputs that users
// compare across machines (crop positions, the synthetic dataset, the epoch
// order) must not depend on the standard library: std::mt19937_64's sequence
// is fixed by the standard, the std:: distributions are not, so every
// mapping from generator words to values is one of these.
#pragma once

#include <cstdint>
#include <random>
#include <string_view>

namespace csr {

// splitmix64's finaliser: turns related seeds (1, 2, 3 ...) into unrelated ones.
inline uint64_t SplitMix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// 64-bit FNV-1a of a string: a name turned into a seed.
inline uint64_t Fnv1a(std::string_view s, uint64_t h = 0xCBF29CE484222325ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001B3ull;
  }
  return h;
}

// Uniform in [0, n], unbiased (rejection of the first 2^64 mod (n+1) words).
inline uint64_t UniformUpTo(std::mt19937_64& rng, uint64_t n) {
  if (n == UINT64_MAX) return rng();
  const uint64_t range = n + 1;
  const uint64_t threshold = (0 - range) % range;
  for (;;) {
    const uint64_t x = rng();
    if (x >= threshold) return x % range;
  }
}

// One word reduced modulo n, in [0, n): biased by at most n / 2^64, far
// below anything visible for the sizes it is used with. Kept (rather than
// UniformUpTo) where outputs already depend on it: the synthetic dataset and
// the trainer's epoch order, which checkpoints must reproduce.
inline uint64_t ModuloDraw(std::mt19937_64& rng, uint64_t n) { return rng() % n; }

// Uniform in [0, 1) from the top 53 bits of one word.
inline double Uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

}  // namespace csr
