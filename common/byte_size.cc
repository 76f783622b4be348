#include "common/byte_size.h"

#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

namespace gradlab {
namespace {

constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};

}  // namespace

std::string FormatBytes(int64_t bytes) {
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (std::abs(value) >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  if (unit == 0) return absl::StrCat(bytes, " B");
  if (std::abs(value) < 10) return absl::StrFormat("%.1f %s", value, kUnits[unit]);
  return absl::StrFormat("%.0f %s", value, kUnits[unit]);
}

absl::StatusOr<int64_t> ParseBytes(absl::string_view text, absl::string_view what) {
  const auto invalid = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": \"", text,
                     "\" is not a size; write a number and a unit, e.g. 512MiB, 6GiB or 1.5G "
                     "(B, KiB, MiB, GiB, TiB; powers of 1024)"));
  };
  absl::string_view rest = absl::StripAsciiWhitespace(text);
  size_t number_end = 0;
  while (number_end < rest.size() &&
         (absl::ascii_isdigit(rest[number_end]) || rest[number_end] == '.')) {
    ++number_end;
  }
  double number = 0;
  if (number_end == 0 || !absl::SimpleAtod(rest.substr(0, number_end), &number)) {
    return invalid();
  }
  const std::string upper =
      absl::AsciiStrToUpper(absl::StripAsciiWhitespace(rest.substr(number_end)));
  absl::string_view unit = upper;
  if (!absl::ConsumeSuffix(&unit, "IB") && unit.size() > 1) absl::ConsumeSuffix(&unit, "B");
  const std::vector<std::pair<std::string, int>> powers = {{"", 0},  {"B", 0}, {"K", 1},
                                                           {"M", 2}, {"G", 3}, {"T", 4}};
  for (const auto& [name, power] : powers) {
    if (unit != name) continue;
    const double bytes = number * std::pow(1024.0, power);
    if (!std::isfinite(bytes) || bytes >= 9.0e18) return invalid();
    return static_cast<int64_t>(std::llround(bytes));
  }
  return invalid();
}

}  // namespace gradlab
