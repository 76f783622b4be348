// How the data-parallel groups this server leads as rank 0 meet: what the scheduler tells
// the remote ranks and what the training run of rank 0 joins with.
#ifndef GRADLAB_SERVER_EXPERIMENTS_RENDEZVOUS_OPTIONS_H_
#define GRADLAB_SERVER_EXPERIMENTS_RENDEZVOUS_OPTIONS_H_

#include <string>

#include "absl/time/time.h"

namespace gradlab {

struct RendezvousOptions {
  // The address the workers reach rank 0's Gloo connections at (they bind to it); empty:
  // the address this machine's hostname resolves to.
  std::string advertise_address;
  // For the rendezvous and every collective: a rank lost mid-run fails the others' next
  // collective within this time, and the run goes back to the queue.
  absl::Duration collective_timeout = absl::Seconds(60);
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_EXPERIMENTS_RENDEZVOUS_OPTIONS_H_
