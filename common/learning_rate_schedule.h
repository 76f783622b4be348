// The learning rate a run trains with at each optimizer step: an optional constant
// warm-up, then the base rate lowered by StepLR (every lr_step_size epochs) or MultiStepLR
// (at milestones in epochs or iterations), as torch.optim.lr_scheduler computes them.
#ifndef GRADLAB_COMMON_LEARNING_RATE_SCHEDULE_H_
#define GRADLAB_COMMON_LEARNING_RATE_SCHEDULE_H_

#include <cstdint>

#include "common/experiment_spec.h"

namespace gradlab {

// The rate of optimizer step `step` (1-based, counted over the whole run), which falls in
// epoch `epoch` (1-based), of a resolved spec. Each drop multiplies by lr_gamma in turn,
// as PyTorch's schedulers do, so that the rates equal theirs bit for bit.
double LearningRateAt(const ExperimentSpec& spec, int epoch, int64_t step);

}  // namespace gradlab

#endif  // GRADLAB_COMMON_LEARNING_RATE_SCHEDULE_H_
