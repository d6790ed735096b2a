// Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) are macros over the addresses of
// global objects, which Swift cannot import; these getters hand them over as plain values.
#ifndef PCNN_CMPI_SHIM_H
#define PCNN_CMPI_SHIM_H
#include <mpi.h>

static inline MPI_Comm pcnn_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype pcnn_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype pcnn_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype pcnn_mpi_uint64(void) { return MPI_UINT64_T; }
static inline MPI_Datatype pcnn_mpi_int(void) { return MPI_INT; }
static inline MPI_Op pcnn_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op pcnn_mpi_min(void) { return MPI_MIN; }
static inline MPI_Errhandler pcnn_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline void *pcnn_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline int pcnn_mpi_success(void) { return MPI_SUCCESS; }
static inline int pcnn_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
static inline int pcnn_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }

#endif
