#include "common/free_memory.h"

#include <malloc.h>

// gperftools' C interface (gperftools/malloc_extension_c.h), weak: null unless tcmalloc is
// linked into the program.
extern "C" void MallocExtension_ReleaseFreeMemory(void) __attribute__((weak));

namespace gradlab {

void ReleaseFreeMemory() {
  if (MallocExtension_ReleaseFreeMemory != nullptr) {
    MallocExtension_ReleaseFreeMemory();
  } else {
    malloc_trim(0);
  }
}

}  // namespace gradlab
