// Facts about an experiment's state that the server and the CLI both need.
#ifndef GRADLAB_COMMON_EXPERIMENT_STATE_H_
#define GRADLAB_COMMON_EXPERIMENT_STATE_H_

#include "gradlab/v1/experiment_service.pb.h"

namespace gradlab {

// SUCCEEDED, FAILED or CANCELLED: the experiment will not change again.
inline bool IsFinished(v1::ExperimentState state) {
  return state == v1::SUCCEEDED || state == v1::FAILED || state == v1::CANCELLED;
}

}  // namespace gradlab

#endif  // GRADLAB_COMMON_EXPERIMENT_STATE_H_
