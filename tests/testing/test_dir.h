// A folder of the running test's own under the test temp dir, emptied first, so that
// tests that write files never see another test's (or an earlier run's) leftovers.
#ifndef GRADLAB_TESTS_TESTING_TEST_DIR_H_
#define GRADLAB_TESTS_TESTING_TEST_DIR_H_

#include <unistd.h>

#include <filesystem>
#include <string>

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
inline std::filesystem::path FreshSuiteDir(const std::string& name) {
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / (name + "-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  return dir;
}

}  // namespace gradlab

#endif  // GRADLAB_TESTS_TESTING_TEST_DIR_H_
