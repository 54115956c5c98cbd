/*
 * A fake libnvidia-ml.so.1 for the GPU sampler tests: the nvml* entry points that pynvml
 * resolves for inferwatch's paths, serving values and errors from a script file, so that the
 * real pynvml ctypes code runs against it (put its directory on LD_LIBRARY_PATH).
 *
 * The script is the file named by $FAKE_NVML_SCRIPT, re-read whenever its inode, size or
 * mtime changes (write a temporary file and rename it over the script). One `key=value` per
 * line; `#` starts a comment. Without a script: two default GPUs.
 *
 *   count=2                       devices nvmlDeviceGetCount_v2 reports (at most 64)
 *   driver=550.54.15              nvmlSystemGetDriverVersion
 *   init_error=9                  nvmlInit* returns this code (9 = DRIVER_NOT_LOADED)
 *   error=18                      every other call (but nvmlShutdown, nvmlErrorString)
 *                                 returns this code: a library-wide failure
 *   hang=nvmlDeviceGetPowerUsage  calls to this function block while the line is there
 *   err.<function>=<code>         that function returns code, for every device
 *   xid=<gpu>:<xid>,<gpu>:<xid>   XID events, delivered once each and in order by
 *                                 nvmlEventSetWait_v2 (append to inject more)
 *   gpu<N>.name= .uuid= .lost=0|1 .mem_total= .mem_used= .mem_reserved= (bytes)
 *   gpu<N>.util= .mem_util= (%)  .temp= (C)  .power= (mW)  .energy= (mJ)
 *   gpu<N>.procs=<pid>:<bytes>,...   compute processes
 *   gpu<N>.events=<mask>          supported event types (default: XID critical error)
 *   gpu<N>.err.<function>=<code>  that function returns code for device N only
 *
 * A lost device answers NVML_ERROR_GPU_IS_LOST to every call that names it. Calls made while
 * the library is not initialised answer NVML_ERROR_UNINITIALIZED, as the real one does.
 * `fake_nvml_calls(name)` (not an NVML symbol) tells a test how often a function was entered.
 */

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef int nvmlReturn_t;

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_TIMEOUT 10
#define NVML_ERROR_GPU_IS_LOST 15
#define NVML_ERROR_ARGUMENT_VERSION_MISMATCH 25
#define NVML_ERROR_UNKNOWN 999

#define XID_CRITICAL_ERROR 0x8ULL
#define MEMORY_V2_VERSION 0x02000028u

#define MAX_GPUS 64
#define MAX_PROCS 32
#define MAX_ERRS 128
#define MAX_XIDS 4096
#define NAME_LEN 96
#define FN_LEN 64

typedef struct {
    unsigned int pid;
    unsigned long long used_gpu_memory;
    unsigned int gpu_instance_id;
    unsigned int compute_instance_id;
} nvmlProcessInfo_t; /* v2 and v3 share this layout */

typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;

typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;

typedef struct {
    unsigned int gpu, memory;
} nvmlUtilization_t;

typedef struct nvmlDevice_st {
    int index;
    char name[NAME_LEN];
    char uuid[NAME_LEN];
    int lost;
    unsigned long long mem_total, mem_used, mem_reserved;
    unsigned int util, mem_util, temp, power_mw;
    unsigned long long energy_mj;
    unsigned long long events;
    int nprocs;
    unsigned int proc_pid[MAX_PROCS];
    unsigned long long proc_mem[MAX_PROCS];
} *nvmlDevice_t;

typedef struct nvmlEventSet_st {
    unsigned long long mask[MAX_GPUS];
} *nvmlEventSet_t;

typedef struct {
    nvmlDevice_t device;
    unsigned long long eventType;
    unsigned long long eventData;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlEventData_t;

enum {
    F_INIT, F_SHUTDOWN, F_DRIVER, F_COUNT, F_HANDLE, F_NAME, F_UUID, F_MEM, F_MEM2, F_UTIL,
    F_TEMP, F_POWER, F_ENERGY, F_PROCS3, F_PROCS2, F_EVCREATE, F_EVFREE, F_EVREGISTER,
    F_EVWAIT, F_EVSUPPORTED, F_N
};
static const char *const FN_NAMES[F_N] = {
    "nvmlInitWithFlags", "nvmlShutdown", "nvmlSystemGetDriverVersion", "nvmlDeviceGetCount_v2",
    "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetName", "nvmlDeviceGetUUID",
    "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetTemperature", "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetComputeRunningProcesses_v3",
    "nvmlDeviceGetComputeRunningProcesses_v2", "nvmlEventSetCreate", "nvmlEventSetFree",
    "nvmlDeviceRegisterEvents", "nvmlEventSetWait_v2", "nvmlDeviceGetSupportedEventTypes",
};

struct script {
    int count, init_error, error;
    char driver[80];
    char hang[FN_LEN];
    int nerrs;
    int err_gpu[MAX_ERRS];
    char err_fn[MAX_ERRS][FN_LEN];
    int err_code[MAX_ERRS];
    int nxids;
    int xid_gpu[MAX_XIDS];
    unsigned long long xid_code[MAX_XIDS];
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct script S;
static struct nvmlDevice_st devices[MAX_GPUS];
static int loaded;
static int held_fd = -1;
static struct stat seen;
static int refcount;
static int xids_delivered;
static unsigned long long calls[F_N];

static void set_defaults(void) {
    memset(&S, 0, sizeof S);
    S.count = 2;
    snprintf(S.driver, sizeof S.driver, "%s", "550.54.15");
    for (int i = 0; i < MAX_GPUS; i++) {
        struct nvmlDevice_st *d = &devices[i];
        memset(d, 0, sizeof *d);
        d->index = i;
        snprintf(d->name, sizeof d->name, "%s", "NVIDIA Fake GPU");
        snprintf(d->uuid, sizeof d->uuid, "GPU-fake-%04d", i);
        d->mem_total = 80ULL << 30;
        d->events = XID_CRITICAL_ERROR;
    }
}

static unsigned long long num(const char *s) { return strtoull(s, NULL, 0); }

static void parse_procs(struct nvmlDevice_st *d, const char *v) {
    d->nprocs = 0;
    while (*v && d->nprocs < MAX_PROCS) {
        char *end;
        unsigned long pid = strtoul(v, &end, 10);
        if (end == v || *end != ':') return;
        d->proc_pid[d->nprocs] = (unsigned int)pid;
        d->proc_mem[d->nprocs] = strtoull(end + 1, &end, 10);
        d->nprocs++;
        v = (*end == ',') ? end + 1 : end;
    }
}

static void parse_xids(const char *v) {
    S.nxids = 0;
    while (*v && S.nxids < MAX_XIDS) {
        char *end;
        long gpu = strtol(v, &end, 10);
        if (end == v || *end != ':') return;
        S.xid_gpu[S.nxids] = (int)gpu;
        S.xid_code[S.nxids] = strtoull(end + 1, &end, 10);
        S.nxids++;
        v = (*end == ',') ? end + 1 : end;
    }
}

static void add_err(int gpu, const char *fn, const char *v) {
    if (S.nerrs >= MAX_ERRS) return;
    S.err_gpu[S.nerrs] = gpu;
    snprintf(S.err_fn[S.nerrs], FN_LEN, "%s", fn);
    S.err_code[S.nerrs] = (int)num(v);
    S.nerrs++;
}

static void parse_gpu_key(int i, const char *k, const char *v) {
    struct nvmlDevice_st *d = &devices[i];
    if (!strcmp(k, "name")) snprintf(d->name, sizeof d->name, "%s", v);
    else if (!strcmp(k, "uuid")) snprintf(d->uuid, sizeof d->uuid, "%s", v);
    else if (!strcmp(k, "lost")) d->lost = (int)num(v);
    else if (!strcmp(k, "mem_total")) d->mem_total = num(v);
    else if (!strcmp(k, "mem_used")) d->mem_used = num(v);
    else if (!strcmp(k, "mem_reserved")) d->mem_reserved = num(v);
    else if (!strcmp(k, "util")) d->util = (unsigned int)num(v);
    else if (!strcmp(k, "mem_util")) d->mem_util = (unsigned int)num(v);
    else if (!strcmp(k, "temp")) d->temp = (unsigned int)num(v);
    else if (!strcmp(k, "power")) d->power_mw = (unsigned int)num(v);
    else if (!strcmp(k, "energy")) d->energy_mj = num(v);
    else if (!strcmp(k, "events")) d->events = num(v);
    else if (!strcmp(k, "procs")) parse_procs(d, v);
    else if (!strncmp(k, "err.", 4)) add_err(i, k + 4, v);
}

static void parse_line(char *line) {
    char *hash = strchr(line, '#');
    if (hash) *hash = '\0';
    char *eq = strchr(line, '=');
    if (!eq) return;
    *eq = '\0';
    char *k = line, *v = eq + 1;
    size_t n = strlen(v);
    while (n && (v[n - 1] == '\n' || v[n - 1] == '\r' || v[n - 1] == ' ')) v[--n] = '\0';
    while (*k == ' ') k++;
    if (!strcmp(k, "count")) {
        long c = (long)num(v);
        S.count = c < 0 ? 0 : (c > MAX_GPUS ? MAX_GPUS : (int)c);
    } else if (!strcmp(k, "driver")) snprintf(S.driver, sizeof S.driver, "%s", v);
    else if (!strcmp(k, "init_error")) S.init_error = (int)num(v);
    else if (!strcmp(k, "error")) S.error = (int)num(v);
    else if (!strcmp(k, "hang")) snprintf(S.hang, sizeof S.hang, "%s", v);
    else if (!strcmp(k, "xid")) parse_xids(v);
    else if (!strncmp(k, "err.", 4)) add_err(-1, k + 4, v);
    else if (!strncmp(k, "gpu", 3)) {
        char *end;
        long i = strtol(k + 3, &end, 10);
        if (end != k + 3 && *end == '.' && i >= 0 && i < MAX_GPUS) parse_gpu_key((int)i, end + 1, v);
    }
}

/*
 * Re-read the script if it changed. Called with `mu` held. The file last read is kept open,
 * so its inode number cannot be reused by the next script renamed over it: a new inode
 * always means a new script, even within one tick of the file system's clock.
 */
static void refresh(void) {
    const char *path = getenv("FAKE_NVML_SCRIPT");
    struct stat st;
    if (!path || stat(path, &st) != 0) {
        if (!loaded) set_defaults();
        loaded = 1;
        return;
    }
    if (loaded && st.st_dev == seen.st_dev && st.st_ino == seen.st_ino &&
        st.st_size == seen.st_size && st.st_mtim.tv_sec == seen.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == seen.st_mtim.tv_nsec)
        return;
    FILE *f = fopen(path, "r");
    if (!f) return;
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        return;
    }
    set_defaults();
    char line[16384];
    while (fgets(line, sizeof line, f)) parse_line(line);
    if (held_fd >= 0) close(held_fd);
    held_fd = dup(fileno(f));
    fclose(f);
    seen = st;
    loaded = 1;
}

static void nap_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int scripted_error(int fn, int gpu) {
    for (int i = 0; i < S.nerrs; i++)
        if ((S.err_gpu[i] == -1 || S.err_gpu[i] == gpu) && !strcmp(S.err_fn[i], FN_NAMES[fn]))
            return S.err_code[i];
    return NVML_SUCCESS;
}

static int valid(nvmlDevice_t d) {
    return d >= devices && d < devices + MAX_GPUS;
}

/*
 * Every entry point passes through here: count the call, re-read the script, block while the
 * script says this function hangs, then decide the return code. Returns with `mu` held.
 */
static int gate(int fn, nvmlDevice_t dev, int needs_init) {
    pthread_mutex_lock(&mu);
    calls[fn]++;
    refresh();
    while (!strcmp(S.hang, FN_NAMES[fn])) {
        pthread_mutex_unlock(&mu);
        nap_ms(5);
        pthread_mutex_lock(&mu);
        refresh();
    }
    if (needs_init && refcount == 0) return NVML_ERROR_UNINITIALIZED;
    if (S.error) return S.error;
    if (dev) {
        if (!valid(dev)) return NVML_ERROR_INVALID_ARGUMENT;
        if (dev->index >= S.count || dev->lost) return NVML_ERROR_GPU_IS_LOST;
    }
    return scripted_error(fn, dev ? dev->index : -1);
}

#define GATE(fn, dev)                                 \
    do {                                              \
        int rc_ = gate((fn), (dev), 1);               \
        if (rc_ != NVML_SUCCESS) {                    \
            pthread_mutex_unlock(&mu);                \
            return rc_;                               \
        }                                             \
    } while (0)
#define DONE() \
    do {                           \
        pthread_mutex_unlock(&mu); \
        return NVML_SUCCESS;       \
    } while (0)

static void copy_str(char *dst, unsigned int len, const char *src) {
    if (len == 0) return;
    snprintf(dst, len, "%s", src);
}

unsigned long long fake_nvml_calls(const char *name) {
    unsigned long long n = 0;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < F_N; i++)
        if (!strcmp(FN_NAMES[i], name)) n = calls[i];
    pthread_mutex_unlock(&mu);
    return n;
}

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    int rc = gate(F_INIT, NULL, 0);
    if (rc == NVML_SUCCESS) rc = S.init_error;
    if (rc == NVML_SUCCESS) refcount++;
    pthread_mutex_unlock(&mu);
    return rc;
}

nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
nvmlReturn_t nvmlInit(void) { return nvmlInitWithFlags(0); }

nvmlReturn_t nvmlShutdown(void) {
    gate(F_SHUTDOWN, NULL, 0);
    int rc = NVML_SUCCESS;
    if (refcount == 0) rc = NVML_ERROR_UNINITIALIZED;
    else refcount--;
    pthread_mutex_unlock(&mu);
    return rc;
}

const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 7: return "Insufficient Size";
    case 9: return "Driver Not Loaded";
    case 10: return "Timeout";
    case 13: return "Function Not Found";
    case 15: return "GPU is lost";
    case 18: return "RM has detected an NVML/RM version mismatch.";
    case 25: return "Argument version mismatch";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    GATE(F_DRIVER, NULL);
    copy_str(version, length, S.driver);
    DONE();
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    GATE(F_COUNT, NULL);
    *count = (unsigned int)S.count;
    DONE();
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    int rc = gate(F_HANDLE, NULL, 1);
    if (rc == NVML_SUCCESS && index >= (unsigned int)S.count) rc = NVML_ERROR_INVALID_ARGUMENT;
    if (rc == NVML_SUCCESS && devices[index].lost) rc = NVML_ERROR_GPU_IS_LOST;
    if (rc == NVML_SUCCESS) rc = scripted_error(F_HANDLE, (int)index);
    if (rc == NVML_SUCCESS) *device = &devices[index];
    pthread_mutex_unlock(&mu);
    return rc;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    GATE(F_NAME, device);
    copy_str(name, length, device->name);
    DONE();
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    GATE(F_UUID, device);
    copy_str(uuid, length, device->uuid);
    DONE();
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    GATE(F_MEM, device);
    /* v1 counts the reserved memory as used */
    memory->total = device->mem_total;
    memory->used = device->mem_used + device->mem_reserved;
    memory->free = memory->total > memory->used ? memory->total - memory->used : 0;
    DONE();
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory) {
    GATE(F_MEM2, device);
    if (memory->version != MEMORY_V2_VERSION) {
        pthread_mutex_unlock(&mu);
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    }
    unsigned long long taken = device->mem_used + device->mem_reserved;
    memory->total = device->mem_total;
    memory->reserved = device->mem_reserved;
    memory->used = device->mem_used;
    memory->free = device->mem_total > taken ? device->mem_total - taken : 0;
    DONE();
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *util) {
    GATE(F_UTIL, device);
    util->gpu = device->util;
    util->memory = device->mem_util;
    DONE();
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, int sensor, unsigned int *temp) {
    GATE(F_TEMP, device);
    if (sensor != 0) {
        pthread_mutex_unlock(&mu);
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    *temp = device->temp;
    DONE();
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) {
    GATE(F_POWER, device);
    *power = device->power_mw;
    DONE();
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long *e) {
    GATE(F_ENERGY, device);
    *e = device->energy_mj;
    DONE();
}

static nvmlReturn_t running_processes(int fn, nvmlDevice_t device, unsigned int *count,
                                      nvmlProcessInfo_t *infos) {
    GATE(fn, device);
    unsigned int n = (unsigned int)device->nprocs;
    if (*count < n || (n > 0 && infos == NULL)) {
        *count = n;
        pthread_mutex_unlock(&mu);
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (unsigned int i = 0; i < n; i++) {
        infos[i].pid = device->proc_pid[i];
        infos[i].used_gpu_memory = device->proc_mem[i];
        infos[i].gpu_instance_id = 0xFFFFFFFFu;
        infos[i].compute_instance_id = 0xFFFFFFFFu;
    }
    *count = n;
    DONE();
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *count,
                                                     nvmlProcessInfo_t *infos) {
    return running_processes(F_PROCS3, device, count, infos);
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device, unsigned int *count,
                                                     nvmlProcessInfo_t *infos) {
    return running_processes(F_PROCS2, device, count, infos);
}

nvmlReturn_t nvmlDeviceGetSupportedEventTypes(nvmlDevice_t device, unsigned long long *types) {
    GATE(F_EVSUPPORTED, device);
    *types = device->events;
    DONE();
}

nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
    GATE(F_EVCREATE, NULL);
    *set = calloc(1, sizeof **set);
    if (!*set) {
        pthread_mutex_unlock(&mu);
        return NVML_ERROR_UNKNOWN;
    }
    DONE();
}

nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
    GATE(F_EVFREE, NULL);
    free(set);
    DONE();
}

nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t device, unsigned long long types,
                                      nvmlEventSet_t set) {
    GATE(F_EVREGISTER, device);
    if ((device->events & types) != types) {
        pthread_mutex_unlock(&mu);
        return NVML_ERROR_NOT_SUPPORTED;
    }
    set->mask[device->index] |= types;
    DONE();
}

nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data,
                                 unsigned int timeoutms) {
    GATE(F_EVWAIT, NULL);
    double deadline = now_ms() + timeoutms;
    for (;;) {
        while (xids_delivered < S.nxids) {
            int gpu = S.xid_gpu[xids_delivered];
            unsigned long long xid = S.xid_code[xids_delivered];
            xids_delivered++;
            if (gpu >= 0 && gpu < S.count && (set->mask[gpu] & XID_CRITICAL_ERROR)) {
                data->device = &devices[gpu];
                data->eventType = XID_CRITICAL_ERROR;
                data->eventData = xid;
                data->gpuInstanceId = 0xFFFFFFFFu;
                data->computeInstanceId = 0xFFFFFFFFu;
                DONE();
            }
        }
        int rc = S.error ? S.error : (refcount == 0 ? NVML_ERROR_UNINITIALIZED : 0);
        double left = deadline - now_ms();
        if (rc != NVML_SUCCESS || left <= 0) {
            pthread_mutex_unlock(&mu);
            return rc != NVML_SUCCESS ? rc : NVML_ERROR_TIMEOUT;
        }
        pthread_mutex_unlock(&mu);
        nap_ms(left < 5 ? (long)left + 1 : 5);
        pthread_mutex_lock(&mu);
        refresh();
    }
}
