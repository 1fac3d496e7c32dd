declare module 'dynalite' {
  import type { Server } from 'node:http';
  /** dynalite ships no types; the options used here. */
  export default function dynalite(options?: {
    createTableMs?: number;
    deleteTableMs?: number;
    updateTableMs?: number;
    path?: string;
  }): Server;
}
