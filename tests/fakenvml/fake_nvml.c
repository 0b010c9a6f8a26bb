/* A fake libnvidia-ml.so.1 for machines without an NVIDIA GPU.
 *
 * The real nvidia-ml-py (pynvml) loads it through ctypes exactly as it loads the driver's
 * library, so the exporter's GPU code runs unchanged. The fake GPUs come from the file named by
 * FAKE_NVML_CONFIG, re-read on every call so a test can change the world between samples:
 *
 *   driver 550.54.15
 *   gpu GPU-0aa1 NVIDIA-A100 85899345920 1073741824 37      (uuid name total used util%)
 *   proc 0 12345 536870912                                  (gpu-index pid used-bytes)
 *   lost 1                                                  (device 1 fell off the bus)
 *   fail nvmlDeviceGetUtilizationRates 999                  (make one function fail)
 *
 * No FAKE_NVML_CONFIG or an unreadable file: nvmlInit fails with DRIVER_NOT_LOADED, like a host
 * whose driver is not loaded. Build: gcc -shared -fPIC -o libnvidia-ml.so.1 fake_nvml.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0, NVML_ERROR_UNINITIALIZED = 1, NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_INSUFFICIENT_SIZE = 7, NVML_ERROR_DRIVER_NOT_LOADED = 9, NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_UNKNOWN = 999
};

#define MAX_GPUS 16
#define MAX_PROCS 256
#define MAX_FAILS 16

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;

typedef struct fake_gpu {
    int index, lost;
    char uuid[96], name[96];
    unsigned long long total, used;
    unsigned int util;
} fake_gpu;
typedef fake_gpu *nvmlDevice_t;

static struct {
    char driver[80];
    int ngpus, nprocs, nfails;
    fake_gpu gpus[MAX_GPUS];
    struct { int gpu; unsigned int pid; unsigned long long used; } procs[MAX_PROCS];
    struct { char fn[96]; int code; } fails[MAX_FAILS];
} world;
static int initialized;

/* Re-read the configuration; 0 on success. */
static int load(void) {
    const char *path = getenv("FAKE_NVML_CONFIG");
    FILE *f = path ? fopen(path, "r") : NULL;
    char line[512];
    if (!f) return -1;
    memset(&world, 0, sizeof world);
    strcpy(world.driver, "550.54.15");
    while (fgets(line, sizeof line, f)) {
        fake_gpu *g = &world.gpus[world.ngpus];
        if (!strncmp(line, "driver ", 7)) {
            sscanf(line + 7, "%79s", world.driver);
        } else if (!strncmp(line, "gpu ", 4) && world.ngpus < MAX_GPUS) {
            if (sscanf(line + 4, "%95s %95s %llu %llu %u", g->uuid, g->name, &g->total, &g->used, &g->util) == 5) {
                g->index = world.ngpus++;
            }
        } else if (!strncmp(line, "proc ", 5) && world.nprocs < MAX_PROCS) {
            int n = world.nprocs;
            if (sscanf(line + 5, "%d %u %llu", &world.procs[n].gpu, &world.procs[n].pid, &world.procs[n].used) == 3)
                world.nprocs++;
        } else if (!strncmp(line, "lost ", 5)) {
            int i = atoi(line + 5);
            if (i >= 0 && i < MAX_GPUS) world.gpus[i].lost = 1;
        } else if (!strncmp(line, "fail ", 5) && world.nfails < MAX_FAILS) {
            int n = world.nfails;
            if (sscanf(line + 5, "%95s %d", world.fails[n].fn, &world.fails[n].code) == 2) world.nfails++;
        }
    }
    fclose(f);
    return 0;
}

/* Common prologue: re-read the world, then apply a configured failure for this function. */
static nvmlReturn_t enter(const char *fn) {
    int i;
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    if (load() != 0) return NVML_ERROR_DRIVER_NOT_LOADED;
    for (i = 0; i < world.nfails; i++)
        if (!strcmp(world.fails[i].fn, fn)) return world.fails[i].code;
    return NVML_SUCCESS;
}

static nvmlReturn_t device(nvmlDevice_t d, const char *fn) {
    nvmlReturn_t r = enter(fn);
    if (r != NVML_SUCCESS) return r;
    if (!d || d->index < 0 || d->index >= world.ngpus) return NVML_ERROR_INVALID_ARGUMENT;
    return world.gpus[d->index].lost ? NVML_ERROR_GPU_IS_LOST : NVML_SUCCESS;
}

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    if (load() != 0) return NVML_ERROR_DRIVER_NOT_LOADED;
    initialized = 1;
    return enter("nvmlInit");
}
nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
nvmlReturn_t nvmlInit(void) { return nvmlInitWithFlags(0); }

nvmlReturn_t nvmlShutdown(void) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    initialized = 0;
    return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    nvmlReturn_t r = enter("nvmlSystemGetDriverVersion");
    if (r != NVML_SUCCESS) return r;
    if (strlen(world.driver) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(version, world.driver);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    nvmlReturn_t r = enter("nvmlDeviceGetCount_v2");
    if (r != NVML_SUCCESS) return r;
    *count = (unsigned int)world.ngpus;
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetCount(unsigned int *count) { return nvmlDeviceGetCount_v2(count); }

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *out) {
    nvmlReturn_t r = enter("nvmlDeviceGetHandleByIndex_v2");
    if (r != NVML_SUCCESS) return r;
    if (index >= (unsigned int)world.ngpus) return NVML_ERROR_INVALID_ARGUMENT;
    if (world.gpus[index].lost) return NVML_ERROR_GPU_IS_LOST;
    *out = &world.gpus[index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t d, unsigned int *index) {
    nvmlReturn_t r = device(d, "nvmlDeviceGetIndex");
    if (r == NVML_SUCCESS) *index = (unsigned int)d->index;
    return r;
}

static nvmlReturn_t copy_string(const char *src, char *dst, unsigned int length) {
    if (strlen(src) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(dst, src);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *uuid, unsigned int length) {
    nvmlReturn_t r = device(d, "nvmlDeviceGetUUID");
    return r != NVML_SUCCESS ? r : copy_string(d->uuid, uuid, length);
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned int length) {
    nvmlReturn_t r = device(d, "nvmlDeviceGetName");
    return r != NVML_SUCCESS ? r : copy_string(d->name, name, length);
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m) {
    nvmlReturn_t r = device(d, "nvmlDeviceGetMemoryInfo");
    if (r != NVML_SUCCESS) return r;
    m->total = d->total;
    m->used = d->used;
    m->free = d->total > d->used ? d->total - d->used : 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
    nvmlReturn_t r = device(d, "nvmlDeviceGetUtilizationRates");
    if (r != NVML_SUCCESS) return r;
    u->gpu = d->util;
    u->memory = d->total ? (unsigned int)(100 * d->used / d->total) : 0;
    return NVML_SUCCESS;
}

/* NVML's two-call protocol: with too small a buffer, say how many and INSUFFICIENT_SIZE. */
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *count, nvmlProcessInfo_t *infos) {
    unsigned int n = 0, i, k = 0;
    nvmlReturn_t r = device(d, "nvmlDeviceGetComputeRunningProcesses_v3");
    if (r != NVML_SUCCESS) return r;
    for (i = 0; i < (unsigned int)world.nprocs; i++)
        if (world.procs[i].gpu == d->index) n++;
    if (n == 0) { *count = 0; return NVML_SUCCESS; }
    if (*count < n || !infos) { *count = n; return NVML_ERROR_INSUFFICIENT_SIZE; }
    for (i = 0; i < (unsigned int)world.nprocs; i++) {
        if (world.procs[i].gpu != d->index) continue;
        infos[k].pid = world.procs[i].pid;
        infos[k].usedGpuMemory = world.procs[i].used;
        infos[k].gpuInstanceId = 0xFFFFFFFF;
        infos[k].computeInstanceId = 0xFFFFFFFF;
        k++;
    }
    *count = k;
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t d, unsigned int *count, nvmlProcessInfo_t *infos) {
    return nvmlDeviceGetComputeRunningProcesses_v3(d, count, infos);
}
