/*
 * The vfb/vkbd layout as Xen's public headers define it, for
 * tests/test_protocol_layout.py to compare with xend_vfb.protocol.
 *
 * Built normally, it prints "name value" lines for the compiler's ABI.
 * Built with -DLAYOUT_EXPECT='"file.h"' (a file of "#define EXPECT_name value"
 * lines), it prints nothing but fails to compile on any difference: this is
 * how a 32-bit ABI is checked with "gcc -m32 -fsyntax-only", which needs no
 * 32-bit C library.
 */
#include <stddef.h>
#include <stdint.h>
#include <xen/io/fbif.h>
#include <xen/io/kbdif.h>

#define LAYOUT(X) \
    X(fb_in_cons, offsetof(struct xenfb_page, in_cons)) \
    X(fb_in_prod, offsetof(struct xenfb_page, in_prod)) \
    X(fb_out_cons, offsetof(struct xenfb_page, out_cons)) \
    X(fb_out_prod, offsetof(struct xenfb_page, out_prod)) \
    X(fb_width, offsetof(struct xenfb_page, width)) \
    X(fb_height, offsetof(struct xenfb_page, height)) \
    X(fb_line_length, offsetof(struct xenfb_page, line_length)) \
    X(fb_mem_length, offsetof(struct xenfb_page, mem_length)) \
    X(fb_depth, offsetof(struct xenfb_page, depth)) \
    X(fb_pd, offsetof(struct xenfb_page, pd)) \
    X(fb_pd_entry, sizeof(((struct xenfb_page *)0)->pd[0])) \
    X(fb_in_ring_offs, XENFB_IN_RING_OFFS) \
    X(fb_in_ring_size, XENFB_IN_RING_SIZE) \
    X(fb_in_ring_len, XENFB_IN_RING_LEN) \
    X(fb_out_ring_offs, XENFB_OUT_RING_OFFS) \
    X(fb_out_ring_size, XENFB_OUT_RING_SIZE) \
    X(fb_out_ring_len, XENFB_OUT_RING_LEN) \
    X(fb_in_event_size, sizeof(union xenfb_in_event)) \
    X(fb_out_event_size, sizeof(union xenfb_out_event)) \
    X(fb_type_update, XENFB_TYPE_UPDATE) \
    X(fb_type_resize, XENFB_TYPE_RESIZE) \
    X(fb_type_refresh_period, XENFB_TYPE_REFRESH_PERIOD) \
    X(fb_no_refresh, XENFB_NO_REFRESH) \
    X(fb_update_type, offsetof(struct xenfb_update, type)) \
    X(fb_update_x, offsetof(struct xenfb_update, x)) \
    X(fb_update_y, offsetof(struct xenfb_update, y)) \
    X(fb_update_width, offsetof(struct xenfb_update, width)) \
    X(fb_update_height, offsetof(struct xenfb_update, height)) \
    X(fb_resize_width, offsetof(struct xenfb_resize, width)) \
    X(fb_resize_height, offsetof(struct xenfb_resize, height)) \
    X(fb_resize_stride, offsetof(struct xenfb_resize, stride)) \
    X(fb_resize_depth, offsetof(struct xenfb_resize, depth)) \
    X(fb_resize_offset, offsetof(struct xenfb_resize, offset)) \
    X(fb_refresh_period, offsetof(struct xenfb_refresh_period, period)) \
    X(kbd_in_cons, offsetof(struct xenkbd_page, in_cons)) \
    X(kbd_in_prod, offsetof(struct xenkbd_page, in_prod)) \
    X(kbd_out_cons, offsetof(struct xenkbd_page, out_cons)) \
    X(kbd_out_prod, offsetof(struct xenkbd_page, out_prod)) \
    X(kbd_in_ring_offs, XENKBD_IN_RING_OFFS) \
    X(kbd_in_ring_size, XENKBD_IN_RING_SIZE) \
    X(kbd_in_ring_len, XENKBD_IN_RING_LEN) \
    X(kbd_out_ring_offs, XENKBD_OUT_RING_OFFS) \
    X(kbd_out_ring_size, XENKBD_OUT_RING_SIZE) \
    X(kbd_out_ring_len, XENKBD_OUT_RING_LEN) \
    X(kbd_in_event_size, sizeof(union xenkbd_in_event)) \
    X(kbd_type_motion, XENKBD_TYPE_MOTION) \
    X(kbd_type_key, XENKBD_TYPE_KEY) \
    X(kbd_type_pos, XENKBD_TYPE_POS) \
    X(kbd_motion_rel_x, offsetof(struct xenkbd_motion, rel_x)) \
    X(kbd_motion_rel_y, offsetof(struct xenkbd_motion, rel_y)) \
    X(kbd_motion_rel_z, offsetof(struct xenkbd_motion, rel_z)) \
    X(kbd_key_pressed, offsetof(struct xenkbd_key, pressed)) \
    X(kbd_key_keycode, offsetof(struct xenkbd_key, keycode)) \
    X(kbd_pos_abs_x, offsetof(struct xenkbd_position, abs_x)) \
    X(kbd_pos_abs_y, offsetof(struct xenkbd_position, abs_y)) \
    X(kbd_pos_rel_z, offsetof(struct xenkbd_position, rel_z))

#ifdef LAYOUT_EXPECT
#include LAYOUT_EXPECT
#define CHECK(name, value) _Static_assert((value) == EXPECT_##name, #name " differs");
LAYOUT(CHECK)
#else
#include <stdio.h>
#define PRINT(name, value) printf("%s %lu\n", #name, (unsigned long)(value));
int main(void)
{
    LAYOUT(PRINT)
    return 0;
}
#endif
