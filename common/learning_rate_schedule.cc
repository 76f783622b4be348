#include "common/learning_rate_schedule.h"

namespace gradlab {

double LearningRateAt(const ExperimentSpec& spec, int epoch, int64_t step) {
  if (step <= spec.warmup_iterations) {
    return spec.warmup_learning_rate.value_or(spec.learning_rate / 10);
  }
  // StepLR drops after every lr_step_size-th epoch; MultiStepLR after each milestone
  // epoch, or after each milestone step when it counts iterations.
  int drops = spec.lr_step_size > 0 ? (epoch - 1) / spec.lr_step_size : 0;
  const bool in_epochs = spec.lr_milestone_unit == "epochs";
  for (const int milestone : spec.lr_milestones) {
    if ((in_epochs ? epoch : step) > milestone) ++drops;
  }
  double rate = spec.learning_rate;
  for (int i = 0; i < drops; ++i) rate *= spec.lr_gamma;
  return rate;
}

}  // namespace gradlab
