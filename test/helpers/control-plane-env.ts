/** A complete, valid control-plane environment for config tests (every required key set). */
export const CONTROL_PLANE_ENV = {
  META_APP_SECRET: 's',
  META_VERIFY_TOKEN: 'v',
  CONTROL_API_KEY: 'k'.repeat(16),
  META_PHONE_NUMBER_ID: '436666719526789',
  META_BUSINESS_NUMBER: '447700900123',
  META_GRAPH_URL: 'http://127.0.0.1:1/v23.0',
  META_ACCESS_TOKEN: 't',
  CALLS_TABLE: 'calls',
  PERMISSIONS_TABLE: 'permissions',
  WORKERS_TABLE: 'workers',
  CALL_JOBS_QUEUE_URL: 'http://127.0.0.1:2/000/jobs',
};
