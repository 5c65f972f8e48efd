// The daemon's routes share the HTTP streaming helpers with the engine.
export * from "../http/streaming.ts";
