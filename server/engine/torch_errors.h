// The engine's one boundary for exceptions: LibTorch reports failures by throwing
// c10::Error (and the standard library std::bad_alloc and friends). Every engine entry
// point runs its body through CatchTorchErrors so that no exception reaches a caller,
// a worker thread or a gRPC callback.
#ifndef GRADLAB_SERVER_ENGINE_TORCH_ERRORS_H_
#define GRADLAB_SERVER_ENGINE_TORCH_ERRORS_H_

#include <c10/util/Exception.h>

#include <exception>
#include <new>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace gradlab {

// Runs `body` (returning absl::Status or absl::StatusOr<T>) and turns any exception it
// throws into an error status of the same type.
template <typename Body>
auto CatchTorchErrors(Body&& body) -> decltype(body()) {
  try {
    return std::forward<Body>(body)();
  } catch (const c10::Error& e) {
    // what_without_backtrace: users need the message, not LibTorch's C++ stack.
    return absl::InternalError(absl::StrCat("LibTorch error: ", e.what_without_backtrace()));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory");
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("unexpected error: ", e.what()));
  }
}

}  // namespace gradlab

#endif  // GRADLAB_SERVER_ENGINE_TORCH_ERRORS_H_
