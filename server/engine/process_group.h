// How one rank of a data-parallel run finds its group, and what its gradient all-reduces
// cost, without LibTorch: the job queue and the worker agent fill these in and pass them
// to TrainRank (server/engine/trainer.h); server/engine/data_parallel.h does the work.
#ifndef GRADLAB_SERVER_ENGINE_PROCESS_GROUP_H_
#define GRADLAB_SERVER_ENGINE_PROCESS_GROUP_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "server/engine/rendezvous_store.h"

namespace gradlab {

struct ProcessGroupOptions {
  // The group's rendezvous (server/engine/rendezvous_store.h), and what to call it in
  // errors ("the coordinator gradlabd:50051").
  std::shared_ptr<RendezvousStore> store;
  std::string store_name;
  // The address the other ranks reach this one at (its Gloo connections bind to it);
  // empty: the address this machine's hostname resolves to, else loopback.
  std::string local_address;
  int rank = 0;
  int world_size = 1;
  // For the rendezvous and for every collective: a rank that does not arrive, dies or is
  // cut off makes the others fail within this time instead of waiting forever.
  absl::Duration timeout = absl::Seconds(60);
};

// What the gradient all-reduces of one rank have cost so far.
struct GradientTraffic {
  int64_t all_reduces = 0;
  int64_t bytes = 0;  // of the buffer each all-reduce sums (per rank, per step)
  absl::Duration time;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_ENGINE_PROCESS_GROUP_H_
