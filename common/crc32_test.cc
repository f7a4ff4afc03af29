#include "common/crc32.h"

#include <gtest/gtest.h>

namespace ablate {
namespace {

TEST(Crc32, MatchesTheStandardCheckValue) {
  // The CRC-32 check value of "123456789" in every catalogue of CRCs.
  EXPECT_EQ(Crc32("123456789"), 0xCBF43926u);
  EXPECT_EQ(Crc32(""), 0u);
}

TEST(Crc32, ExtendsAcrossPieces) {
  EXPECT_EQ(Crc32("56789", Crc32("1234")), Crc32("123456789"));
}

TEST(Crc32, ChangesWithAnyFlippedBit) {
  std::string data(1000, 'x');
  const uint32_t base = Crc32(data);
  data[500] ^= 0x01;
  EXPECT_NE(Crc32(data), base);
}

}  // namespace
}  // namespace ablate
