// A folder of the running test's own under the test temp dir, emptied first, so that
// tests that write files never see another test's (or an earlier run's) leftovers.
#ifndef GRADLAB_TESTS_TESTING_TEST_DIR_H_
#define GRADLAB_TESTS_TESTING_TEST_DIR_H_

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "gtest/gtest.h"

namespace gradlab {

// <TempDir>/<group>/<test name>, empty (not created).
inline std::filesystem::path FreshTestDir(const std::string& group) {
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / group /
                                    ::testing::UnitTest::GetInstance()->current_test_info()->name();
  std::filesystem::remove_all(dir);
  return dir;
}

// <TempDir>/<name>-<process id>, empty (not created): for what a whole test suite shares
// (a server's state, certificates), so that suites run at once (ctest -j) never share it.
// Removed when the test program exits normally, so that they do not pile up.
inline std::filesystem::path FreshSuiteDir(const std::string& name) {
  static std::vector<std::filesystem::path>* const created = [] {
    auto* dirs = new std::vector<std::filesystem::path>();
    std::atexit([] {
      std::error_code ignored;
      for (const std::filesystem::path& dir : *created) std::filesystem::remove_all(dir, ignored);
    });
    return dirs;
  }();
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / (name + "-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  created->push_back(dir);
  return dir;
}

}  // namespace gradlab

#endif  // GRADLAB_TESTS_TESTING_TEST_DIR_H_
