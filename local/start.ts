/**
 * `npm start`: runs the local stack until interrupted and prints what listens where.
 */
import { ConfigError } from '#core/errors.ts';
import { tryItCommand } from '#simulator/cli.ts';
import { loadLocalConfig } from './config.ts';
import { startLocalStack } from './stack.ts';

async function main(): Promise<void> {
  const config = loadLocalConfig();
  const stack = await startLocalStack({ config, syncCallSettings: true });
  const lines = [
    'wa-sip-bridge local stack is up',
    `  HTTP API          ${stack.url}`,
    `    Meta webhook    ${stack.webhookUrl}   (GET handshake, POST events)`,
    `    control API     ${stack.url}/v1/calls/{callId}   (Authorization: Bearer <CONTROL_API_KEY>)`,
    `    health          ${stack.url}/healthz`,
    `  Graph API         ${stack.graphUrl}${stack.simulator ? '   (Meta simulator)' : '   (external)'}`,
    ...(stack.simulator ? [`  simulator control ${stack.simulator.baseUrl}/_sim/calls   (npm run sim -- --help)`] : []),
    `  DynamoDB          ${stack.aws.dynamodbEndpoint}   (dynalite, in memory)`,
    `  SQS               ${stack.aws.sqsEndpoint}   (local-aws-sqs)`,
    `    call jobs       ${stack.aws.queues.callJobs}`,
    `  media worker      ${stack.worker ? `${stack.worker.sipContact} (${stack.worker.mode === 'child' ? 'child process' : 'in process'})` : 'not started'}`,
    `  SIP target        ${stack.sipTargetUri}${stack.agent ? '   (built-in SIP agent: answers, plays a 1 kHz tone, records, DTMF)' : ''}`,
    `  business number   +${config.meta.businessNumber} (phone number id ${config.meta.phoneNumberId})`,
    // The CLI looks for the simulator at its default URL; with another PORT the command must say where it is.
    ...(stack.simulator ? [`  try it            ${tryItCommand(stack.simulator.baseUrl)}`] : []),
    'Press Ctrl+C to stop.',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`${signal}: stopping\n`);
    stack.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError) console.error(`wa-sip-bridge: ${error.message}`);
  else console.error(error);
  process.exit(1);
});
