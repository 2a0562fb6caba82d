// Optimal string alignment distance, for "did you mean" suggestions (config keys, CLI commands):
// insertions, deletions, substitutions and adjacent transpositions ("stauts" is one edit from
// "status") each cost one. Pure function.
#pragma once

#include <cstddef>
#include <string_view>

namespace gw {

std::size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace gw
