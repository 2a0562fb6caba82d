// The line settings of a serial port (baud, data bits, parity, stop bits; no flow control),
// applied to an open Asio port; shared by the RS-485 bus and the card/line reader drivers.
#pragma once

#include "drivers/asio.h"

namespace gw::drivers {

// `parity` is 'N', 'E' or 'O'; `stop_bits` 1 or 2. Stops at the first option the port refuses
// and returns its error.
boost::system::error_code set_serial_line(asio::serial_port& port, int baud, int data_bits,
                                          char parity, int stop_bits);

}  // namespace gw::drivers
