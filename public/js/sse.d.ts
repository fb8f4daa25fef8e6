export interface SseEvent {
  event: string;
  data: string;
}

export declare class SseParser {
  push(chunk: string): SseEvent[];
  end(): SseEvent[];
}
