/* The Open MPI baseline of benches/spmd.rs: MPI_Barrier among the ranks, and
 * MPI_Bcast of BYTES bytes from rank 0 followed by a barrier (as the cohort side
 * does), each ITERS times after a warm-up. Prints, on rank 0:
 *   barrier_ns <total ns for ITERS barriers>
 *   bcast_ns <total ns for ITERS bcasts>
 * Usage: spmd_mpi_baseline barrier|bcast ITERS [BYTES]
 * Run over TCP only: mpirun -np 2 --mca pml ob1 --mca btl tcp,self ... */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (argc < 3) {
        if (rank == 0) fprintf(stderr, "usage: %s barrier|bcast ITERS [BYTES]\n", argv[0]);
        MPI_Finalize();
        return 2;
    }
    long iters = atol(argv[2]);
    long bytes = argc > 3 ? atol(argv[3]) : 64L << 20;
    if (strcmp(argv[1], "barrier") == 0) {
        for (int i = 0; i < 100; i++) MPI_Barrier(MPI_COMM_WORLD);
        double t = MPI_Wtime();
        for (long i = 0; i < iters; i++) MPI_Barrier(MPI_COMM_WORLD);
        t = MPI_Wtime() - t;
        if (rank == 0) printf("barrier_ns %.0f\n", t * 1e9);
    } else {
        char *buf = malloc(bytes);
        memset(buf, rank == 0 ? 7 : 0, bytes);
        MPI_Bcast(buf, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD);
        MPI_Barrier(MPI_COMM_WORLD);
        double t = MPI_Wtime();
        for (long i = 0; i < iters; i++) {
            MPI_Bcast(buf, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD);
            MPI_Barrier(MPI_COMM_WORLD);
        }
        t = MPI_Wtime() - t;
        if (buf[bytes - 1] != 7) fprintf(stderr, "rank %d: bad data\n", rank);
        if (rank == 0) printf("bcast_ns %.0f\n", t * 1e9);
        free(buf);
    }
    MPI_Finalize();
    return 0;
}
