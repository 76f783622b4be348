// A whole file's bytes, for tests that compare files (uploaded and exported models).
#ifndef GRADLAB_TESTS_TESTING_FILE_BYTES_H_
#define GRADLAB_TESTS_TESTING_FILE_BYTES_H_

#include <fstream>
#include <iterator>
#include <string>

namespace gradlab {

// Empty when the file cannot be read.
inline std::string ReadFileBytes(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(file), {});
}

}  // namespace gradlab

#endif  // GRADLAB_TESTS_TESTING_FILE_BYTES_H_
