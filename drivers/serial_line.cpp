#include "drivers/serial_line.h"

namespace gw::drivers {

boost::system::error_code set_serial_line(asio::serial_port& port, int baud, int data_bits,
                                          char parity, int stop_bits) {
  using B = asio::serial_port_base;
  const B::parity::type p = parity == 'E'   ? B::parity::even
                            : parity == 'O' ? B::parity::odd
                                            : B::parity::none;
  boost::system::error_code ec;
  port.set_option(B::baud_rate(static_cast<unsigned>(baud)), ec);
  if (!ec) port.set_option(B::character_size(static_cast<unsigned>(data_bits)), ec);
  if (!ec) port.set_option(B::parity(p), ec);
  if (!ec) {
    port.set_option(B::stop_bits(stop_bits == 2 ? B::stop_bits::two : B::stop_bits::one), ec);
  }
  if (!ec) port.set_option(B::flow_control(B::flow_control::none), ec);
  return ec;
}

}  // namespace gw::drivers
