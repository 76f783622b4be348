// The TorchScript files of make_torchscript_fixtures.py, scripted by Debian's PyTorch once
// per test process, for the tests of uploaded models.
#ifndef GRADLAB_SERVER_ENGINE_TESTING_TORCHSCRIPT_FIXTURES_H_
#define GRADLAB_SERVER_ENGINE_TESTING_TORCHSCRIPT_FIXTURES_H_

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tests/testing/child_process.h"
#include "tests/testing/test_dir.h"

namespace gradlab {

// The path of fixture `name` (good.pt, loop.pt, ...; see the script).
inline std::string TorchScriptFixture(const std::string& name) {
  static const std::filesystem::path* folder = [] {
    auto* made_in = new std::filesystem::path(FreshSuiteDir("torchscript_fixtures"));
    const CommandResult made =
        RunCommand({"/usr/bin/python3", "server/engine/testing/make_torchscript_fixtures.py",
                    made_in->string()});
    EXPECT_EQ(made.exit_code, 0) << made.out;
    return made_in;
  }();
  return (*folder / name).string();
}

}  // namespace gradlab

#endif  // GRADLAB_SERVER_ENGINE_TESTING_TORCHSCRIPT_FIXTURES_H_
