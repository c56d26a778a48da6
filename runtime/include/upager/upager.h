// Umbrella header: everything an application needs.
#ifndef UPAGER_UPAGER_H_
#define UPAGER_UPAGER_H_

#include "upager/options.h"    // IWYU pragma: export
#include "upager/region.h"     // IWYU pragma: export
#include "upager/runtime.h"    // IWYU pragma: export
#include "upager/stats.h"      // IWYU pragma: export

#endif  // UPAGER_UPAGER_H_
