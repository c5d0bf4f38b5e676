/* embedded_model.S - links a file (VB_EMBED_PATH) into a binary as read-only data between the
 * symbols NAME_data and NAME_end (NAME: VB_EMBED_NAME, default vb_embedded_model), followed by a
 * NUL byte. The library links the default model this way (vb_embedded_model() in model.c);
 * `vibee serve` links its chat page (tools/vibee/chat_page.html, the Makefile's chat_page.o). */
#ifndef VB_EMBED_NAME
#define VB_EMBED_NAME vb_embedded_model
#endif
#define VB_CAT2(a, b) a##b
#define VB_CAT(a, b) VB_CAT2(a, b)
#define VB_DATA VB_CAT(VB_EMBED_NAME, _data)
#define VB_END VB_CAT(VB_EMBED_NAME, _end)
    .section .rodata
    .balign 64
    .globl VB_DATA
    .hidden VB_DATA
VB_DATA:
    .incbin VB_EMBED_PATH
    .globl VB_END
    .hidden VB_END
VB_END:
    .byte 0
    .section .note.GNU-stack,"",@progbits
