/* Times MPI_Allreduce (MPI_SUM, MPI_FLOAT) the way `ringtrain bench
 * allreduce` times its ring: barrier, then one all-reduce, per iteration;
 * the slowest rank's time per iteration; the median over iterations after
 * warm-up. Prints one JSON line from rank 0.
 *
 * usage: mpirun -np N ./allreduce BYTES ITERS WARMUP
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp(const void *a, const void *b) {
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv) {
	MPI_Init(&argc, &argv);
	int rank, n;
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &n);
	long bytes = argc > 1 ? atol(argv[1]) : 64L << 20;
	int iters = argc > 2 ? atoi(argv[2]) : 20;
	int warmup = argc > 3 ? atoi(argv[3]) : 3;
	long count = bytes / 4;
	float *tmpl = malloc(count * sizeof(float));
	float *buf = malloc(count * sizeof(float));
	double *times = malloc(iters * sizeof(double));
	if (!tmpl || !buf || !times) {
		fprintf(stderr, "allreduce: out of memory\n");
		MPI_Abort(MPI_COMM_WORLD, 1);
	}
	unsigned s = 12345u + rank;
	for (long i = 0; i < count; i++) {
		s = s * 1664525u + 1013904223u;
		tmpl[i] = (float)(s >> 8) / (float)(1 << 24) - 0.5f;
	}
	for (int it = 0; it < warmup + iters; it++) {
		memcpy(buf, tmpl, count * sizeof(float));
		MPI_Barrier(MPI_COMM_WORLD);
		double t0 = MPI_Wtime();
		MPI_Allreduce(MPI_IN_PLACE, buf, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
		double dt = MPI_Wtime() - t0, worst;
		MPI_Reduce(&dt, &worst, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
		if (it >= warmup)
			times[it - warmup] = worst;
	}
	if (rank == 0) {
		qsort(times, iters, sizeof(double), cmp);
		double med = iters % 2 ? times[iters / 2] : (times[iters / 2 - 1] + times[iters / 2]) / 2;
		double alg = (double)(count * 4) / med / 1e9;
		printf("{\"ranks\":%d,\"bytes\":%ld,\"iters\":%d,\"median_s\":%.6f,\"min_s\":%.6f,\"max_s\":%.6f,"
		       "\"algbw_gbps\":%.4f,\"busbw_gbps\":%.4f}\n",
		       n, count * 4, iters, med, times[0], times[iters - 1], alg, alg * 2.0 * (n - 1) / n);
	}
	free(tmpl);
	free(buf);
	free(times);
	MPI_Finalize();
	return 0;
}
