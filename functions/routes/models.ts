/**
 * GET /v1/models: the model served and the LoRA adapters it serves per request, in OpenAI's list shape with the
 * fields Mistral's and Anthropic's clients read (a card's `type` is Mistral's "base", or "fine-tuned" with the
 * base model as `root` and, as vLLM's, `parent`: Anthropic's clients, which would find "model", do not check it).
 */
import { Hono } from "hono";
import type { Service } from "../service.ts";
import { requireModel } from "./common.ts";

/** Whether requests may carry tools: Mistral's own prompt format with its tool tokens (no chat template). */
function functionCalling(service: Service): boolean {
  if (service.chatTemplate) return false;
  try {
    service.tokenizer.special("[TOOL_CALLS]");
    return true;
  } catch {
    return false;
  }
}

function card(service: Service, lora?: string) {
  const { model, engine, images } = service;
  const id = lora ?? model.id;
  return {
    id,
    object: "model",
    created: model.created,
    owned_by: "pixtral-server",
    type: lora === undefined ? "base" : "fine-tuned",
    ...lora === undefined ? {} : { root: model.id, parent: model.id },
    name: id,
    description: lora === undefined
      ? model.description
      : `LoRA adapter over ${model.id}, applied per request`,
    aliases: lora === undefined ? model.aliases : [],
    max_context_length: engine?.contextLength ?? null,
    // vLLM's name for it.
    max_model_len: engine?.contextLength ?? null,
    capabilities: {
      completion_chat: true,
      completion_fim: false,
      function_calling: functionCalling(service),
      fine_tuning: false,
      vision: images.enabled,
    },
    deprecation: null,
    demo: model.demo,
    // Anthropic's.
    display_name: id,
    created_at: new Date(model.created * 1000).toISOString(),
  };
}

export function modelRoutes(service: Service): Hono {
  return new Hono()
    .get("/v1/models", (c) => {
      const data = [card(service), ...(service.model.loras ?? []).map((lora) => card(service, lora))];
      // One page: Anthropic's list fields say so.
      return c.json({
        object: "list",
        data,
        has_more: false,
        first_id: data[0].id,
        last_id: data.at(-1)!.id,
      });
    })
    // Ids may contain "/" (hf:ORG/REPO models), which clients send unencoded.
    .get("/v1/models/:id{.+}", (c) => {
      return c.json(card(service, requireModel(service, c.req.param("id"))));
    });
}
