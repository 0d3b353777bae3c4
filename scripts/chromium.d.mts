import type { BrowserContext, ViewportSize } from "playwright-core";

export declare const CHROMIUM_PATH: string;
export declare const CHROMIUM_ARGS: string[];
export declare function launchChromium(options?: {
  viewport?: ViewportSize;
  colorScheme?: "light" | "dark";
  ignoreHTTPSErrors?: boolean;
}): Promise<{ context: BrowserContext; close(): Promise<void> }>;
