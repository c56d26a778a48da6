// Umbrella header: everything an application needs (Runtime, Region,
// Snapshot, the options, Stats and the BackingStore interface). The error
// macros are separate: upager/status_macros.h. Each header states its own
// contracts; start with upager/runtime.h.
#ifndef UPAGER_UPAGER_H_
#define UPAGER_UPAGER_H_

#include "upager/backing_store.h"  // IWYU pragma: export
#include "upager/options.h"        // IWYU pragma: export
#include "upager/region.h"         // IWYU pragma: export
#include "upager/runtime.h"        // IWYU pragma: export
#include "upager/snapshot.h"       // IWYU pragma: export
#include "upager/stats.h"          // IWYU pragma: export

#endif  // UPAGER_UPAGER_H_
