// Dlt645Meter: one simulated DL/T 645-2007 electricity meter, for tools/sim/rs485_sim. It answers
// read-data requests for the common data identifiers with values that change every tick, and
// read-address requests. Not thread-safe; the simulator's one loop owns it.
//
// Guarantees a test can rely on:
// - Values are a pure function of (index i, tick k) and values_json() prints exactly what a
//   reply carries: every value is computed as an integer in the DI's last digit and printed
//   from that integer, never from a double.
// - Values are BCD-encoded by this file's own encoder, not by gw_protocols, whose decoder the
//   tests check against it. Replies start with FE FE FE FE.
// - Read-data (0x11) is answered when the address is ours, AA bytes matching any digits (the
//   standard's wildcard); read-address (0x13) when the address is AA..AA; broadcast time sync
//   (0x08), replies of other meters and frames for other addresses get no answer. An unknown DI
//   gets the exception reply 0xD1 with error bit 1 "no requested data"; any other command to
//   our address gets C|0xC0 with bit 0 "other error".
//
//   DI        name                   format (bytes, value)      served value at tick k
//   00000000  energy_total           4, XXXXXX.XX kWh, sign bit  combined active energy; the
//                                                                mode word counts forward only,
//                                                                so it equals energy_total
//   00010000  energy_total           4, XXXXXX.XX kWh            1000 + 100 i + 0.37 k
//   00020000  energy_reverse         4, XXXXXX.XX kWh            50 + 3 i + 0.11 k
//   02010100  voltage_a              2, XXX.X V                  220.0 + ((7 i + 3 k) % 100)/10
//   02010200  voltage_b              2, XXX.X V                  same with + 33 inside the %
//   02010300  voltage_c              2, XXX.X V                  same with + 66 inside the %
//   0201FF00  voltage_a, _b, _c      3 x 2, XXX.X V              the block of the three above
//   02020100  current_a              3, XXX.XXX A, sign bit      s (5 + 0.25 (i % 20)
//                                                                  + 0.013 (k % 50))
//   02030000  active_power           3, XX.XXXX kW, sign bit     s (1.1 + 0.05 (i % 10)
//                                                                  + 0.0037 (k % 100))
//   02060000  power_factor           2, X.XXX, sign bit          s (0.850
//                                                                  + 0.001 ((3 i + k) % 150))
//   02800002  frequency              2, XX.XX Hz                 49.90 + 0.01 ((i + k) % 21)
//
// s = -1 (export) when (i + k) % 5 == 4, else +1. Energies wrap below 800000 kWh so the
// combined-energy sign bit never fires.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "protocols/dlt645.h"

namespace gw::sim {

class Dlt645Meter {
 public:
  // printed_address: the 12 digits printed on the meter; index: feeds the value formulas.
  // Throws std::invalid_argument for a malformed address (start-up configuration error).
  Dlt645Meter(const std::string& printed_address, int index);

  // The reply frame (whole wire frame, with wake-up preamble) to a checked request frame, or
  // nullopt when the request is not for this meter or needs no answer (broadcast time sync).
  std::optional<std::vector<uint8_t>> handle(const protocols::dlt645::Frame& request);

  void tick(int k);                 // values move deterministically with the tick number
  std::string values_json() const;  // {"energy_total":..,"voltage_a":..,...} as served now
  const protocols::dlt645::Address& address() const;

 private:
  protocols::dlt645::Address address_;
  int index_;
  int tick_ = 0;
};

}  // namespace gw::sim
