#ifndef APM_CRC32C_H
#define APM_CRC32C_H

/*
 * CRC-32C (Castagnoli, the polynomial of iSCSI and ext4), table driven.
 * Start with crc = 0; feed pieces by passing the previous result.
 */
#include <stddef.h>
#include <stdint.h>

uint32_t apm_crc32c(uint32_t crc, const void *data, size_t len);

#endif
