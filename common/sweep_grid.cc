#include "common/sweep_grid.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/client_text.h"
#include "common/experiment_spec.h"
#include "common/spec_proto.h"

namespace gradlab {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Value;

constexpr size_t kMaxSweepNameCharacters = 200;
// Integers a JSON number (a double) holds exactly.
constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53

std::string KindText(const Value& value) {
  switch (value.kind_case()) {
    case Value::kBoolValue:
      return "a bool";
    case Value::kNumberValue:
      return "a number";
    case Value::kStringValue:
      return "a string";
    case Value::kNullValue:
      return "null";
    case Value::kListValue:
      return "a list";
    case Value::kStructValue:
      return "an object";
    default:
      return "no value";
  }
}

bool SameValue(const Value& a, const Value& b) {
  if (a.kind_case() != b.kind_case()) return false;
  switch (a.kind_case()) {
    case Value::kBoolValue:
      return a.bool_value() == b.bool_value();
    case Value::kNumberValue:
      return a.number_value() == b.number_value();
    case Value::kStringValue:
      return a.string_value() == b.string_value();
    default:
      return false;  // refused before they are compared
  }
}

// The axis as errors name it: sweep.axes[1] (batch_norm).
std::string AxisText(const v1::SweepSpec& sweep, int axis) {
  return absl::StrCat("sweep.axes[", axis, "] (", QuoteClientText(sweep.axes(axis).field()), ")");
}

// Sets `field` of `spec` to `value`, or says why it cannot take it.
absl::Status SetField(v1::ExperimentSpec& spec, const FieldDescriptor& field, const Value& value) {
  const google::protobuf::Reflection& reflection = *spec.GetReflection();
  const auto wrong_kind = [&](const char* wanted) {
    return absl::InvalidArgumentError(absl::StrCat("value ", QuoteClientText(SweepValueText(value)),
                                                   " is ", KindText(value), ", not ", wanted));
  };
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_BOOL:
      if (value.kind_case() != Value::kBoolValue) return wrong_kind("a bool (true or false)");
      reflection.SetBool(&spec, &field, value.bool_value());
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_STRING:
      if (value.kind_case() != Value::kStringValue) return wrong_kind("a string");
      reflection.SetString(&spec, &field, value.string_value());
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_DOUBLE:
      if (value.kind_case() != Value::kNumberValue) return wrong_kind("a number");
      reflection.SetDouble(&spec, &field, value.number_value());
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
    case FieldDescriptor::CPPTYPE_UINT64: {
      if (value.kind_case() != Value::kNumberValue) return wrong_kind("a whole number");
      const double number = value.number_value();
      double low = -kMaxExactInteger, high = kMaxExactInteger;
      if (field.cpp_type() == FieldDescriptor::CPPTYPE_INT32) {
        low = std::numeric_limits<int32_t>::min();
        high = std::numeric_limits<int32_t>::max();
      } else if (field.cpp_type() == FieldDescriptor::CPPTYPE_UINT64) {
        low = 0;
      }
      if (!std::isfinite(number) || number != std::floor(number) || number < low || number > high) {
        return wrong_kind(absl::StrFormat("a whole number in [%.0f, %.0f]", low, high).c_str());
      }
      if (field.cpp_type() == FieldDescriptor::CPPTYPE_INT32) {
        reflection.SetInt32(&spec, &field, static_cast<int32_t>(number));
      } else if (field.cpp_type() == FieldDescriptor::CPPTYPE_INT64) {
        reflection.SetInt64(&spec, &field, static_cast<int64_t>(number));
      } else {
        reflection.SetUInt64(&spec, &field, static_cast<uint64_t>(number));
      }
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError("the field cannot be an axis");
  }
}

// The fields of the axes, checked: each names a field that may vary, once.
absl::StatusOr<std::vector<const FieldDescriptor*>> AxisFields(const v1::SweepSpec& sweep) {
  const google::protobuf::Descriptor& spec = *v1::ExperimentSpec::descriptor();
  std::vector<const FieldDescriptor*> fields;
  for (int a = 0; a < sweep.axes_size(); ++a) {
    const std::string& name = sweep.axes(a).field();
    const FieldDescriptor* field = spec.FindFieldByName(name);
    if (field == nullptr || field->is_repeated() ||
        field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      return absl::InvalidArgumentError(
          absl::StrCat(AxisText(sweep, a),
                       ": not an ExperimentSpec field a sweep can vary (e.g. model, "
                       "batch_norm, skip_connections, init, learning_rate, batch_size)"));
    }
    if (name == "name" || name == "labels" || name == "seed") {
      return absl::InvalidArgumentError(
          absl::StrCat(AxisText(sweep, a), ": ", name, " cannot be an axis",
                       name == "seed" ? " (give sweep.seeds or sweep.seed_count)" : ""));
    }
    for (int b = 0; b < a; ++b) {
      if (fields[b] == field) {
        return absl::InvalidArgumentError(
            absl::StrCat(AxisText(sweep, a), ": the field is already ", AxisText(sweep, b)));
      }
    }
    if (sweep.axes(a).values().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(AxisText(sweep, a), ": has no values"));
    }
    fields.push_back(field);
  }
  return fields;
}

absl::StatusOr<std::vector<uint64_t>> Seeds(const v1::SweepSpec& sweep) {
  if (sweep.has_seed_count() && sweep.seeds_size() > 0) {
    return absl::InvalidArgumentError("sweep: give seeds or seed_count, not both");
  }
  if (sweep.has_seed_count()) {
    if (sweep.seed_count() < 1 || sweep.seed_count() > kMaxSweepSeeds) {
      return absl::InvalidArgumentError(absl::StrCat("sweep.seed_count: ", sweep.seed_count(),
                                                     " is out of range [1, ", kMaxSweepSeeds, "]"));
    }
    const uint64_t first = SpecFromProto(sweep.base()).seed;
    std::vector<uint64_t> seeds;
    for (int i = 0; i < sweep.seed_count(); ++i) seeds.push_back(first + i);
    return seeds;
  }
  if (sweep.seeds().empty()) return std::vector<uint64_t>{SpecFromProto(sweep.base()).seed};
  std::vector<uint64_t> seeds;
  std::set<uint64_t> seen;
  for (uint64_t seed : sweep.seeds()) {
    if (!seen.insert(seed).second) {
      return absl::InvalidArgumentError(absl::StrCat("sweep.seeds: ", seed, " is given twice"));
    }
    seeds.push_back(seed);
  }
  return seeds;
}

}  // namespace

absl::StatusOr<v1::SweepAxis> ParseSweepAxis(absl::string_view text) {
  const size_t equals = text.find('=');
  if (equals == absl::string_view::npos || equals == 0 || equals + 1 == text.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        QuoteClientText(text), " is not FIELD=VALUE,VALUE,... (e.g. batch_norm=false,true)"));
  }
  v1::SweepAxis axis;
  axis.set_field(std::string(text.substr(0, equals)));
  const FieldDescriptor* field = v1::ExperimentSpec::descriptor()->FindFieldByName(axis.field());
  if (field == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(QuoteClientText(axis.field()), " is not an ExperimentSpec field"));
  }
  for (absl::string_view word : absl::StrSplit(text.substr(equals + 1), ',')) {
    Value& value = *axis.add_values();
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_BOOL: {
        bool flag;
        if (!absl::SimpleAtob(word, &flag)) {
          return absl::InvalidArgumentError(
              absl::StrCat(axis.field(), ": ", QuoteClientText(word), " is not true or false"));
        }
        value.set_bool_value(flag);
        break;
      }
      case FieldDescriptor::CPPTYPE_STRING:
        value.set_string_value(std::string(word));
        break;
      default: {
        double number;
        if (!absl::SimpleAtod(word, &number)) {
          return absl::InvalidArgumentError(
              absl::StrCat(axis.field(), ": ", QuoteClientText(word), " is not a number"));
        }
        value.set_number_value(number);
      }
    }
  }
  return axis;
}

std::string SweepValueText(const Value& value) {
  switch (value.kind_case()) {
    case Value::kBoolValue:
      return value.bool_value() ? "true" : "false";
    case Value::kNumberValue:
      return absl::StrFormat("%.15g", value.number_value());
    case Value::kStringValue:
      return value.string_value();
    default:
      return KindText(value);
  }
}

std::string SweepCellText(const v1::SweepSpec& sweep, const std::vector<Value>& cell) {
  if (cell.empty()) return "(no axes)";
  std::vector<std::string> parts;
  for (size_t a = 0; a < cell.size() && a < static_cast<size_t>(sweep.axes_size()); ++a) {
    parts.push_back(absl::StrCat(sweep.axes(a).field(), "=", SweepValueText(cell[a])));
  }
  return absl::StrJoin(parts, ", ");
}

absl::StatusOr<SweepGrid> ExpandSweep(const v1::SweepSpec& sweep, int64_t max_runs) {
  if (CharacterCount(sweep.name()) > kMaxSweepNameCharacters) {
    return absl::InvalidArgumentError(
        absl::StrCat("sweep.name: at most ", kMaxSweepNameCharacters,
                     " characters (given: ", CharacterCount(sweep.name()), ")"));
  }
  absl::StatusOr<std::vector<const FieldDescriptor*>> fields = AxisFields(sweep);
  if (!fields.ok()) return fields.status();
  SweepGrid grid;
  absl::StatusOr<std::vector<uint64_t>> seeds = Seeds(sweep);
  if (!seeds.ok()) return seeds.status();
  grid.seeds = *std::move(seeds);

  // The values of each axis, each of the field's type and given once; the grid's size,
  // counted up to one more than max_runs (so that it cannot overflow).
  const int64_t too_many = max_runs + 1;
  int64_t runs = static_cast<int64_t>(grid.seeds.size());
  std::vector<std::string> sizes;
  for (int a = 0; a < sweep.axes_size(); ++a) {
    const auto& values = sweep.axes(a).values();
    for (int v = 0; v < values.size(); ++v) {
      v1::ExperimentSpec probe;
      if (absl::Status fits = SetField(probe, *(*fields)[a], values[v]); !fits.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(AxisText(sweep, a), ": ", fits.message()));
      }
      for (int w = 0; w < v; ++w) {
        if (SameValue(values[w], values[v])) {
          return absl::InvalidArgumentError(absl::StrCat(AxisText(sweep, a), ": value ",
                                                         QuoteClientText(SweepValueText(values[v])),
                                                         " is given twice"));
        }
      }
    }
    const int64_t count = values.size();
    runs = runs > too_many / count ? too_many : std::min(runs * count, too_many);
    sizes.push_back(absl::StrCat(count));
  }
  if (runs > max_runs) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sweep: ", sizes.empty() ? "1 cell" : absl::StrCat(absl::StrJoin(sizes, " x "), " values"),
        " and ", grid.seeds.size(), grid.seeds.size() == 1 ? " seed" : " seeds",
        " make more runs than the ", max_runs,
        " this server takes in one sweep (--max_sweep_runs)"));
  }

  // The cells, row-major, each checked as a server checks a submitted spec.
  const int64_t cell_count = runs / static_cast<int64_t>(grid.seeds.size());
  std::vector<ExperimentSpec> cell_specs;
  for (int64_t c = 0; c < cell_count; ++c) {
    std::vector<Value> cell(sweep.axes_size());
    int64_t rest = c;
    for (int a = sweep.axes_size() - 1; a >= 0; --a) {
      const int count = sweep.axes(a).values_size();
      cell[a] = sweep.axes(a).values(static_cast<int>(rest % count));
      rest /= count;
    }
    v1::ExperimentSpec spec = sweep.base();
    for (int a = 0; a < sweep.axes_size(); ++a) {
      SetField(spec, *(*fields)[a], cell[a]).IgnoreError();  // checked above
    }
    for (const auto& [key, value] : sweep.labels()) (*spec.mutable_labels())[key] = value;
    absl::StatusOr<ExperimentSpec> resolved = ResolveSpec(SpecFromProto(spec));
    if (!resolved.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("sweep cell ", SweepCellText(sweep, cell),
                                                     ": ", resolved.status().message()));
    }
    cell_specs.push_back(*std::move(resolved));
    grid.cells.push_back(std::move(cell));
  }

  // Seed-major: every cell's first seed before any cell's second.
  for (size_t s = 0; s < grid.seeds.size(); ++s) {
    for (size_t c = 0; c < cell_specs.size(); ++c) {
      ExperimentSpec spec = cell_specs[c];
      spec.seed = grid.seeds[s];
      grid.runs.push_back(SweepRun{static_cast<int>(c), static_cast<int>(s), SpecToProto(spec)});
    }
  }
  return grid;
}

}  // namespace gradlab
