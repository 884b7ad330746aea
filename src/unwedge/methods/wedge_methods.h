// The missing-wedge methods (issue 6, DESIGN.md §4): registry entries.
//   isonet       IsoNet-style: rotated wedge-filled subtomogram as target, re-wedged copy as input
//   ddw          DeepDeWedge-style: input T_M(R y_even), target R y_odd, band-split Fourier loss
//   ei           equivariant imaging (ICECREAM form): cross-half data term + rotated-output target
//   cryogen-map  CryoGEN-I: generator + data term across halves + adversarial energy prior
//   cryogen-ot   CryoGEN-II: generator + data term + optimal-transport distribution matching
// Options and their defaults: `unwedge methods --options NAME`, docs/wedge-methods.md.
#pragma once
#include "unwedge/methods/method.h"

namespace unwedge {

MethodInfo isonet_method_info();
MethodInfo ddw_method_info();
MethodInfo ei_method_info();
MethodInfo cryogen_map_method_info();
MethodInfo cryogen_ot_method_info();

}  // namespace unwedge
