#ifndef VEIL_CCRYPTO_SHIM_H
#define VEIL_CCRYPTO_SHIM_H
// OpenSSL's libcrypto, for SHA-256 (and SHA-384, which Subresource Integrity prefers): its SHA256_Init/Update/Final use the CPU's SHA extensions, about four
// times libsodium's portable SHA-256 on the 33- and 65-byte inputs of a Merkle tree. The low-level calls are
// deprecated in OpenSSL 3 in favour of EVP, whose per-call fetch costs more than the hash here.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#endif
