#ifndef VEIL_COPENBLAS_SHIM_H
#define VEIL_COPENBLAS_SHIM_H
#include <stddef.h>

/* The few LAPACK routines Veil calls, declared here rather than through lapack.h (a separate Debian package).
   They take Fortran's hidden length argument for each character argument. */
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);
void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);

#endif
