// Converts between the API's ExperimentSpec message and the core's ExperimentSpec
// struct. Unset optional fields stay unset (the struct's defaults apply), so that
// ResolveSpec fills them in the one place that knows the defaults.
#ifndef GRADLAB_COMMON_SPEC_PROTO_H_
#define GRADLAB_COMMON_SPEC_PROTO_H_

#include "common/experiment_spec.h"
#include "gradlab/v1/experiment_service.pb.h"

namespace gradlab {

// A preset ("he2016") fills in the fields the message leaves unset; ResolveSpec checks
// its name.
ExperimentSpec SpecFromProto(const v1::ExperimentSpec& proto);

// Every field of a resolved spec is set in the message.
v1::ExperimentSpec SpecToProto(const ExperimentSpec& spec);

}  // namespace gradlab

#endif  // GRADLAB_COMMON_SPEC_PROTO_H_
