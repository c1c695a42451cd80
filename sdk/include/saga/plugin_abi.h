/* The C boundary between sagad and a step plugin.
 *
 * Only <stdint.h> and <stddef.h> types cross it. Every struct starts with a size (or, for the
 * plugin descriptor, the ABI version and then the size); fields are only ever appended and a
 * reader looks only at what lies inside the size the writer gave. Strings are pointer + length,
 * not NUL-terminated, and live only for the call that passes them. Results go back through host
 * callbacks, so neither side frees memory the other allocated.
 *
 * ABI major changes when an existing field changes meaning; the host refuses a plugin of
 * another major. ABI minor grows when fields are appended.
 */
#ifndef SAGA_PLUGIN_ABI_H
#define SAGA_PLUGIN_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SAGA_ABI_MAJOR 1
#define SAGA_ABI_MINOR 1

/* The name of the one symbol a plugin exports: a pointer to a saga_plugin_entry_fn, laid out
 * as Boost.DLL's BOOST_DLL_ALIAS lays out an alias, so hosts load it with
 * boost::dll::import_alias. */
#define SAGA_PLUGIN_ENTRY_SYMBOL "saga_plugin_entry"

typedef struct saga_str {
  const char* data;
  size_t size;
} saga_str;

typedef enum saga_outcome {
  SAGA_OUTCOME_OK = 0,    /* data: the output, a JSON text */
  SAGA_OUTCOME_RETRY = 1, /* data: the error; a transient failure, retried under the policy */
  SAGA_OUTCOME_FAIL = 2   /* data: the error; a permanent failure, no more attempts */
} saga_outcome;

typedef enum saga_phase { SAGA_PHASE_RUN = 0, SAGA_PHASE_COMPENSATE = 1 } saga_phase;

typedef enum saga_log_level {
  SAGA_LOG_DEBUG = 0,
  SAGA_LOG_INFO = 1,
  SAGA_LOG_WARN = 2,
  SAGA_LOG_ERROR = 3
} saga_log_level;

typedef enum saga_param_type {
  SAGA_PARAM_ANY = 0,
  SAGA_PARAM_STRING = 1,
  SAGA_PARAM_INTEGER = 2,
  SAGA_PARAM_NUMBER = 3,
  SAGA_PARAM_BOOLEAN = 4,
  SAGA_PARAM_ARRAY = 5,
  SAGA_PARAM_OBJECT = 6
} saga_param_type;

/* Host services for one attempt. Valid only during the run/compensate call that received it;
 * callable from the thread of that call. */
typedef struct saga_host_api {
  uint32_t struct_size;
  /* Records the attempt's result; the last call wins. No call means a transient failure. */
  void (*set_result)(void* host_ctx, uint32_t outcome, const char* data, size_t size);
  /* Non-zero once the attempt should stop: cancelled, timed out, or the daemon is stopping. */
  int (*cancelled)(void* host_ctx);
  /* A log line that lands in the daemon's log with the instance id and step. */
  void (*log)(void* host_ctx, uint32_t level, const char* message, size_t size);
} saga_host_api;

/* One attempt of a step (or of its compensation), as the host passes it to the plugin. */
typedef struct saga_attempt {
  uint32_t struct_size;
  void* host_ctx;
  const saga_host_api* host;
  saga_str instance_id;
  saga_str workflow;
  saga_str step;            /* in a compensation, the step being undone */
  saga_str idempotency_key; /* "instance-id/step-name", the same for every attempt */
  uint32_t attempt;         /* 1-based; compensations count their own attempts */
  uint32_t phase;           /* saga_phase */
  int64_t deadline_unix_ms; /* 0: none */
  saga_str params_json;     /* the rendered `with:` object */
  saga_str input_json;      /* the instance input */
  saga_str steps_json;      /* {"step": {"output": ...}} for every succeeded step */
} saga_attempt;

/* One parameter a step type accepts in `with:`. */
typedef struct saga_param {
  uint32_t struct_size;
  saga_str name;
  uint32_t type; /* saga_param_type */
  uint32_t required;
  saga_str default_json; /* empty: no default */
  saga_str description;
} saga_param;

typedef void (*saga_step_fn)(void* type_ctx, const saga_attempt* attempt);

/* saga_step_type.flags (ABI 1.1). */
/* The step's run and compensate return at once and never block (no I/O, no sleep, no lock held
 * by anyone else): the host may call them on its event loop thread instead of handing them to a
 * worker thread. A step that can block must not set it: it would stall every instance. */
#define SAGA_STEP_INLINE 1u

/* A step type: a name such as "testing.noop", its parameters and its entry points. */
typedef struct saga_step_type {
  uint32_t struct_size;
  saga_str name;
  saga_str description;
  const saga_param* params;
  size_t param_count;
  uint32_t accepts_any_params; /* non-zero: `with:` keys outside `params` are allowed */
  void* type_ctx;              /* passed back to run and compensate */
  saga_step_fn run;
  saga_step_fn compensate; /* NULL: the step type cannot undo itself */
  uint32_t flags;          /* ABI 1.1: SAGA_STEP_* bits */
} saga_step_type;

/* The plugin descriptor. abi_major and abi_minor come first and never move, so a host can read
 * them from a plugin of any version. */
typedef struct saga_plugin {
  uint32_t abi_major;
  uint32_t abi_minor;
  uint32_t struct_size;
  saga_str name;
  saga_str version;
  const saga_step_type* step_types;
  size_t step_type_count;
} saga_plugin;

/* The exported entry point: returns a descriptor that lives as long as the library is loaded. */
typedef const saga_plugin* (*saga_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* SAGA_PLUGIN_ABI_H */
