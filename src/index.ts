export {
  DEFAULT_QUEUE,
  DEFAULT_SCHEMA,
  type RateLimit,
  MAX_AGE_MS,
  channelFor,
  checkAge,
  checkJobId,
  formatRateLimit,
  parseAge,
  parseDuration,
  parseInteger,
  parseRateLimit,
  parseRetention,
  queuesChannelFor,
  validateName,
  validateSchema,
} from './config.js';
export { SkiplockError, errorMessage, redactSecrets } from './errors.js';
export { type AttemptOutcome, type AttemptRecord, type Job, type JobOptions, type JobRecord, type JobSpec, type JobStatus, LATE_SLOT_MS, type ScheduledSlot } from './job.js';
export { type ConnectionOptions, type Queryable, checkout, createPool, describeDbError } from './db/pool.js';
export { type MigrateResult, migrate } from './db/migrate.js';
export {
  type EnqueueCallOptions,
  type EnqueueResult,
  type EnqueuedJob,
  Producer,
  type ProducerOptions,
  type TransitionResult,
} from './producer/producer.js';
export { DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_PAYLOAD_BYTES } from './producer/jobspec.js';
export { type ScheduleInfo, type ScheduleOptions, type ScheduleSpec, Schedules, UnknownScheduleError } from './producer/schedules.js';
export { CATCH_UP_POLICIES, type CatchUp, CronSchedule, type SlotPlan, checkTimezone, planSlots } from './schedules/cron.js';
export {
  type QueueCreateOptions,
  type QueueInfo,
  type QueueLimits,
  type QueueSettings,
  Queues,
  type QueuesOptions,
  UnknownQueueError,
} from './admin/queues.js';
export {
  BULK_BATCH,
  type BulkAction,
  type BulkOptions,
  type BulkResult,
  type Diagnosis,
  JOB_STATUSES,
  type JobChange,
  type JobFilter,
  type JobPage,
  Jobs,
  type JobsOptions,
  type JobSummary,
  MAX_PAGE,
  type PruneAges,
  type TaskQueue,
  type TaskStats,
  type WhyReason,
  type WorkerInfo,
  actingStatuses,
  checkFilter,
} from './admin/jobs.js';
export { formatSpan } from './admin/why.js';
export { VERSION } from './version.js';
export { Worker, type WorkerOptions } from './worker/worker.js';
export { JobAbortedError } from './worker/run.js';
export { loadTaskDirectory } from './worker/tasks.js';
export { type BackoffOptions, DEFAULT_BACKOFF, backoffDelay } from './worker/backoff.js';
export type { TaskContext, TaskDefinition, TaskHandler, TaskList, TaskOptions, TaskSchedule } from './worker/types.js';
export { type JobOutcome, Metrics } from './observability/metrics.js';
export { startMetricsServer, type MetricsServerOptions } from './observability/http.js';
export { DEFAULT_DASHBOARD_PORT, type Dashboard, type DashboardOptions, checkDashboardExposure, startDashboard } from './dashboard/server.js';
export { LOG_LEVELS, createLogger, type Logger } from './observability/logger.js';
// For the CLI (which uses the library only through this file): its connection message.
export { connectionFailure } from './db/pool.js';
