/**
 * The prebuilt drachtio-server for tests: the local stack's starter (`local/drachtio-server.ts`),
 * re-exported so the contract suites and the local stack start it the same way.
 */
export { type DrachtioServer, drachtioServerBin, startDrachtioServer } from '#local/drachtio-server.ts';
