// The ids gradlabd gives experiments and sweeps: short, URL-safe, easy to read aloud.
#ifndef GRADLAB_SERVER_EXPERIMENTS_RANDOM_ID_H_
#define GRADLAB_SERVER_EXPERIMENTS_RANDOM_ID_H_

#include <string>

#include "absl/random/random.h"

namespace gradlab {

// Eight random characters of 32 (no l, o, 0 or 1, which read alike): 2^40 ids.
inline std::string RandomId() {
  static constexpr char kAlphabet[] = "abcdefghijkmnpqrstuvwxyz23456789";
  absl::BitGen random;
  std::string id;
  for (int i = 0; i < 8; ++i) {
    id.push_back(kAlphabet[absl::Uniform<size_t>(random, 0, sizeof(kAlphabet) - 1)]);
  }
  return id;
}

}  // namespace gradlab

#endif  // GRADLAB_SERVER_EXPERIMENTS_RANDOM_ID_H_
