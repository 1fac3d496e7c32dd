/**
 * Lambda: pushes the calling settings the bridge owns to Meta — business hours as `call_hours` (review D7) and
 * VOICEMAIL as `voicemail` (review F5) — so configuration stays the source of truth (meta-calling-api.md §3.6).
 * Runs on every deploy (CDK Trigger) and on a schedule (EventBridge, hourly), so an SSM change reaches Meta
 * within the hour and holidays roll into Meta's 20-entry list as dates pass; `npm start` runs it once against
 * the simulator. Idempotent: it writes only what differs.
 */
import { CallHoursMappingError } from '#core/checks/call-hours.ts';
import type { Logger } from '#core/logger.ts';
import { type SettingsSyncResult, syncCallSettings } from '#core/meta/call-settings.ts';
import { type ControlPlaneConfig, loadControlPlaneConfigFromAws } from '../shared/config.ts';
import { powertoolsLogger } from '../shared/runtime.ts';

/**
 * One sync run from a validated configuration. Logs what was written (or that Meta already matched) and
 * rethrows failures — a {@link CallHoursMappingError} naming the day, or a `SettingsSyncError` with Meta's code —
 * so the deploy trigger fails and the scheduled run shows as a Lambda error (alarmed).
 */
export async function runSettingsSync(
  config: ControlPlaneConfig,
  deps: { readonly logger: Logger; readonly now?: () => number },
): Promise<SettingsSyncResult> {
  const log = deps.logger.child({ phoneNumberId: config.line.phoneNumberId });
  try {
    const result = await syncCallSettings({
      graph: {
        baseUrl: config.meta.graphUrl,
        accessToken: config.meta.accessToken,
        timeoutMs: config.meta.graphTimeoutMs,
      },
      phoneNumberId: config.line.phoneNumberId,
      desired: {
        ...(config.businessHours ? { businessHours: config.businessHours } : {}),
        ...(config.voicemail ? { voicemail: config.voicemail } : {}),
      },
      now: new Date((deps.now ?? Date.now)()),
    });
    if (result.written) log.info('calling settings written to Meta', { written: Object.keys(result.written) });
    else log.info('calling settings already match Meta');
    return result;
  } catch (err) {
    log.error('calling settings sync failed', {
      error: err instanceof Error ? err.message : String(err),
      ...(err instanceof CallHoursMappingError ? { day: err.day } : {}),
      ...(typeof (err as { metaCode?: unknown }).metaCode === 'number'
        ? { metaCode: (err as { metaCode: number }).metaCode }
        : {}),
    });
    throw err;
  }
}

/** Lambda entry point (Trigger and schedule both invoke it; the event is ignored). */
export const handler = async (): Promise<{ written: string[] }> => {
  const config = await loadControlPlaneConfigFromAws();
  const result = await runSettingsSync(config, { logger: powertoolsLogger(config.logLevel, 'settings-sync') });
  return { written: Object.keys(result.written ?? {}) };
};
