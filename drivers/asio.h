// Include Boost.Asio through this header. Boost 1.74's awaitable.hpp uses std::exchange without
// including <utility>, which g++ 12 in C++20 mode rejects (../shared/STYLE.md).
#pragma once

#include <utility>

#include <boost/asio.hpp>

namespace asio = boost::asio;
